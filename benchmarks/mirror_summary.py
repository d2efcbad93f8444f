"""Mirror benchmarks against rsync (Debian package, daemon on 127.0.0.1) and a
raw socket copy, measured in the same run.

    .venv/bin/python -m benchmarks.mirror_summary [--scale 1.0] [--runs 3] [--dir D]

The dataset (scale 1.0, about 1.4 GB): four files of 256 MiB, 20,000 files of
1-32 KiB in nested folders, 200 empty files; half compressible, half random.
The change: 1% of 64 KiB blocks of the large files rewritten, 100 bytes
inserted near the start of one large file, 2% of small files modified, 1%
deleted, 1% added, a few renamed.  Each case runs ``--runs`` times with the
two tools alternating; results (medians, min and max) go to
bench-results/mirror.md and mirror.json."""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from dtcore.engine import Engine
from dtcore.model.repset import ReplicationSet
from dtcore.source.mirror import DIFFERENCE, FULL

SECRET = "bench-secret"
RESULTS = Path(__file__).resolve().parent.parent / "bench-results"
WORDS = [b"mirror", b"replication", b"target", b"source", b"queue", b"statistics", b"orphan"]


def text_bytes(rng: random.Random, n: int) -> bytes:
    line = b" ".join(rng.choices(WORDS, k=12)) + b"\n"
    return (line * (n // len(line) + 1))[:n]


def generate(root: Path, scale: float, rng: random.Random) -> None:
    root.mkdir(parents=True)
    for i in range(4):
        size = int((256 << 20) * scale)
        with open(root / f"large{i}.{'img' if i % 2 else 'log'}", "wb") as f:
            for _ in range(0, size, 1 << 20):
                f.write(rng.randbytes(1 << 20) if i % 2 else text_bytes(rng, 1 << 20))
    for i in range(int(20000 * scale)):
        d = root / f"d{i % 20}" / f"s{i % 7}" / f"t{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        n = rng.randrange(1024, 32 * 1024)
        (d / f"f{i}.{'txt' if i % 2 else 'bin'}").write_bytes(
            text_bytes(rng, n) if i % 2 else rng.randbytes(n))
    for i in range(int(200 * scale)):
        (root / f"d{i % 20}" / f"empty{i}").write_bytes(b"")


def change(root: Path, rng: random.Random) -> None:
    for p in sorted(root.glob("large*")):
        size = p.stat().st_size
        with open(p, "r+b") as f:
            for b in rng.sample(range(size >> 16), max(1, (size >> 16) // 100)):
                f.seek(b << 16)
                f.write(rng.randbytes(1 << 16))
    big = root / "large1.img"
    data = big.read_bytes()
    big.write_bytes(data[:4096] + rng.randbytes(100) + data[4096:])
    small = sorted(p for p in root.rglob("f*") if p.is_file())
    for p in rng.sample(small, len(small) // 50):
        b = bytearray(p.read_bytes())
        b[rng.randrange(len(b)):][:64] = rng.randbytes(64)
        p.write_bytes(bytes(b))
    for p in rng.sample(small, len(small) // 100):
        p.unlink(missing_ok=True)
    for i in range(len(small) // 100):
        (root / f"d{i % 20}" / f"added{i}.bin").write_bytes(rng.randbytes(rng.randrange(1024, 32768)))
    for p in [q for q in small if q.exists()][:5]:
        p.rename(p.with_name("renamed-" + p.name))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RsyncDaemon:
    def __init__(self, work: Path, dest: Path) -> None:
        self.port = free_port()
        conf = work / "rsyncd.conf"
        conf.write_text(f"use chroot = no\nuid = root\ngid = root\n[dest]\npath = {dest}\n"
                        "read only = no\n")
        self.proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={conf}",
                                      f"--port={self.port}", "--address=127.0.0.1"])
        time.sleep(0.5)

    def run(self, src: Path, *flags: str) -> tuple[float, int]:
        t = time.perf_counter()
        out = subprocess.run(["rsync", *flags, "--stats", f"{src}/", f"rsync://127.0.0.1:{self.port}/dest/"],
                             capture_output=True, text=True, check=True).stdout
        dt = time.perf_counter() - t
        sent = int(re.search(r"Total bytes sent: ([\d,]+)", out).group(1).replace(",", ""))
        recv = int(re.search(r"Total bytes received: ([\d,]+)", out).group(1).replace(",", ""))
        return dt, sent + recv

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


class DtTarget:
    """``dtcore target`` in its own process, as it would run on another machine."""

    def __init__(self, root: Path) -> None:
        env = {**os.environ, "DTCORE_SECRET": SECRET}
        self.proc = subprocess.Popen([sys.executable, "-m", "dtcore.cli.main", "target", "--root", str(root),
                                      "--port", "0", "--host", "127.0.0.1"], env=env,
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline().rsplit(":", 1)[1])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def dt_run(port: int, src: Path, mode: str, checksum: bool) -> tuple[float, int]:
    with Engine(secret=SECRET) as engine:
        repset = ReplicationSet(src)
        conn = engine.connect(repset, "127.0.0.1", port, "dest")
        t = time.perf_counter()
        engine.mirror(conn, repset, mode, checksum=checksum, orphans=True)
        dt = time.perf_counter() - t
        wire = conn.link.ch.bytes_tx + conn.link.ch.bytes_rx
    return dt, wire


def raw_copy(src: Path) -> float:
    """Every file's bytes through one loopback socket (sendfile, discarded)."""
    files = [p for p in src.rglob("*") if p.is_file()]
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def sink() -> None:
        c, _ = srv.accept()
        buf = bytearray(1 << 20)
        while c.recv_into(buf):
            pass
        c.close()

    th = threading.Thread(target=sink)
    th.start()
    t = time.perf_counter()
    with socket.create_connection(srv.getsockname()) as s:
        for p in files:
            with open(p, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                off = 0
                while off < size:
                    off += os.sendfile(s.fileno(), f.fileno(), off, size - off)
    th.join()
    srv.close()
    return time.perf_counter() - t


def local_sync(src: Path, dest: Path) -> None:
    """Put ``dest`` back to ``src``'s state (not timed)."""
    subprocess.run(["rsync", "-a", "--delete", f"{src}/", f"{dest}/"], check=True)


def summary(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "runs": len(xs)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir")
    args = ap.parse_args(argv)
    work = Path(args.dir or tempfile.mkdtemp(prefix="dtcore-bench-"))
    rng = random.Random(7)
    old, new = work / "old", work / "new"
    rs_dest, dt_root = work / "rsync-dest", work / "dt-root"
    try:
        print("generating ...", flush=True)
        generate(old, args.scale, rng)
        subprocess.run(["cp", "-a", str(old), str(new)], check=True)
        change(new, rng)
        size = sum(p.stat().st_size for p in old.rglob("*") if p.is_file())
        rs_dest.mkdir()
        dt_root.mkdir()
        rsyncd = RsyncDaemon(work, rs_dest)
        target = DtTarget(dt_root)
        dt_dest = dt_root / "dest"
        times: dict[str, list[float]] = {k: [] for k in (
            "raw", "full_dt", "full_rsync", "diff_dt", "diff_rsync", "same_sum_dt", "same_sum_rsync",
            "same_attr_dt", "same_attr_rsync")}
        wire: dict[str, int] = {}
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}", flush=True)
            times["raw"].append(raw_copy(old))
            order = [("dt", dt_dest), ("rsync", rs_dest)]
            if run % 2:
                order.reverse()
            for tool, dest in order:  # full mirror into an empty folder
                shutil.rmtree(dest, ignore_errors=True)
                dest.mkdir()
                os.sync()
                t, w = dt_run(target.port, old, FULL, False) if tool == "dt" else \
                    rsyncd.run(old, "-a", "--whole-file")
                times[f"full_{tool}"].append(t)
                wire[f"full_{tool}"] = w
            for tool, dest in order:  # difference after the change
                local_sync(old, dest)
                t, w = dt_run(target.port, new, DIFFERENCE, True) if tool == "dt" else \
                    rsyncd.run(new, "-a", "--no-whole-file", "--delete")
                times[f"diff_{tool}"].append(t)
                wire[f"diff_{tool}"] = w
            for tool, dest in order:  # nothing changed
                local_sync(new, dest)
                t, _ = dt_run(target.port, new, DIFFERENCE, True) if tool == "dt" else \
                    rsyncd.run(new, "-a", "--checksum")
                times[f"same_sum_{tool}"].append(t)
                t, _ = dt_run(target.port, new, DIFFERENCE, False) if tool == "dt" else \
                    rsyncd.run(new, "-a")
                times[f"same_attr_{tool}"].append(t)
        rsyncd.stop()
        target.stop()
        s = {k: summary(v) for k, v in times.items()}
        med = {k: v["median"] for k, v in s.items()}
        ratios = {
            "full: dtcore throughput / rsync --whole-file (goal >= 1.5)": med["full_rsync"] / med["full_dt"],
            "full: dtcore throughput / raw socket copy": med["raw"] / med["full_dt"],
            "difference: dtcore time / rsync time (goal <= 0.5)": med["diff_dt"] / med["diff_rsync"],
            "difference: dtcore wire bytes / rsync wire bytes (goal <= 1)": wire["diff_dt"] / wire["diff_rsync"],
            "unchanged by checksum: rsync --checksum time / dtcore (goal >= 1.5)":
                med["same_sum_rsync"] / med["same_sum_dt"],
            "unchanged by attributes: rsync -a time / dtcore (goal >= 1)":
                med["same_attr_rsync"] / med["same_attr_dt"],
        }
        out = {"dataset_bytes": size, "scale": args.scale, "times": s, "wire_bytes": wire, "ratios": ratios,
               "command": f"python -m benchmarks.mirror_summary --scale {args.scale} --runs {args.runs}"}
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "mirror.json").write_text(json.dumps(out, indent=2))
        lines = [f"# Mirror vs rsync ({size / 1e9:.2f} GB dataset, {args.runs} runs, medians)", "",
                 f"Command: `{out['command']}`", "", "| Ratio | Value |", "|---|---|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in ratios.items()]
        lines += ["", "| Case | median s | min s | max s |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['median']:.2f} | {v['min']:.2f} | {v['max']:.2f} |" for k, v in s.items()]
        lines += ["", "| Wire bytes (last run) | bytes |", "|---|---|"]
        lines += [f"| {k} | {v:,} |" for k, v in wire.items()]
        (RESULTS / "mirror.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
