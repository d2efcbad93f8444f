"""Mirror benchmarks as users run them: the ``dtcore mirror`` command against
rsync to an rsync daemon (Debian package, on 127.0.0.1), each a process timed
from spawn to exit, alternated, on the same tree; a raw socket copy and the
in-process API are measured in the same runs for reference.  Exits 1 when a
goal of issue 22 is missed.

    .venv/bin/python -m benchmarks.mirror_summary [--scale 1.0] [--runs 5] [--dir D]

The dataset (scale 1.0, about 1.4 GB): four files of 256 MiB, 20,000 files of
1-32 KiB in nested folders, 200 empty files; half compressible, half random.
The change: 1% of 64 KiB blocks of the large files rewritten, 100 bytes
inserted near the start of one large file, 2% of small files modified, 1%
deleted, 1% added, a few renamed.  Each case runs ``--runs`` times with the
two tools alternating; results (medians, min and max) go to
bench-results/mirror.md and mirror.json."""
from __future__ import annotations

import argparse
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

from benchmarks.common import Proxy, results_head, timed
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

    def run(self, src: Path, *flags: str, into: str = "", port: int = 0) -> tuple[float, int]:
        """(seconds from spawn to exit, bytes sent and received by its count)
        of one rsync into the module (or its folder ``into``), to the daemon
        or to ``port`` (a proxy in front of it)."""
        t = time.perf_counter()
        url = f"rsync://127.0.0.1:{port or self.port}/dest/" + (f"{into}/" if into else "")
        done = subprocess.run(["rsync", *flags, "--stats", f"{src}/", url],
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"rsync {' '.join(flags)} to {url} failed ({done.returncode}): "
                               f"{done.stderr[-800:]}")
        out = done.stdout
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


def dt_run(port: int, src: Path, mode: str, checksum: bool, path: str = "dest") -> tuple[float, int]:
    with Engine(secret=SECRET) as engine:
        repset = ReplicationSet(src)
        conn = engine.connect(repset, "127.0.0.1", port, path)
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


def spread(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "runs": len(xs)}


def disk_health(work: Path, files: int = 2000) -> float:
    """Files per second this disk creates (1 KiB each, then removed): a slow
    spell of the machine's disk shows here before it shows in a run."""
    d = work / "health"
    d.mkdir()
    data = b"h" * 1024
    t = time.perf_counter()
    for i in range(files):
        (d / f"{i}").write_bytes(data)
    rate = files / (time.perf_counter() - t)
    shutil.rmtree(d)
    return rate


class Bench:
    """The tools on one machine: ``dtcore mirror`` processes to a ``dtcore
    target`` process and rsync to an rsync daemon, each also behind a
    byte-counting proxy for the case whose wire bytes are compared."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.rs_dest, self.dt_root = work / "rsync-dest", work / "dt-root"
        self.rs_dest.mkdir()
        self.dt_root.mkdir()
        self.dt_dest = self.dt_root / "dest"
        self.rsyncd = RsyncDaemon(work, self.rs_dest)
        self.target = DtTarget(self.dt_root)
        self.dt_proxy, self.rs_proxy = Proxy(self.target.port), Proxy(self.rsyncd.port)
        self.env = {**os.environ, "DTCORE_SECRET": SECRET, "DTCORE_LOGDIR": str(work / "logs"),
                    "PYTHONDONTWRITEBYTECODE": ""}

    def dt(self, src: Path, *flags: str, counted: bool = False, path: str = "dest"
           ) -> tuple[float, int]:
        """(seconds, wire bytes both ways through the proxy, or 0)."""
        port = self.dt_proxy.port if counted else self.target.port
        before = self.dt_proxy.bytes
        seconds, _, _ = timed([sys.executable, "-m", "dtcore.cli.main", "mirror", "-q", *flags,
                               str(src), f"127.0.0.1:{port}:{path}"], self.env)
        return seconds, self.dt_proxy.bytes - before

    def rsync(self, src: Path, *flags: str, counted: bool = False, into: str = ""
              ) -> tuple[float, int]:
        before = self.rs_proxy.bytes
        seconds, _ = self.rsyncd.run(src, *flags, into=into,
                                     port=self.rs_proxy.port if counted else 0)
        return seconds, self.rs_proxy.bytes - before

    def close(self) -> None:
        for p in (self.dt_proxy, self.rs_proxy):
            p.close()
        self.rsyncd.stop()
        self.target.stop()


# (case, goal text, ratio from medians and wire bytes, goal): each ratio is
# "higher is better" so that one comparison decides every row
GOALS = [
    ("full mirror: dtcore CLI throughput / the better rsync variant's", 1.5,
     lambda m, w: min(m["full rsync -a"], m["full rsync -a --whole-file"]) / m["full dtcore"]),
    ("nothing changed, by attributes: rsync -a time / dtcore CLI time", 1.0,
     lambda m, w: m["same_attr rsync -a"] / m["same_attr dtcore"]),
    ("nothing changed, by checksum: rsync -a --checksum time / dtcore CLI time (dtcore <= 0.67x)",
     1.5, lambda m, w: m["same_sum rsync -a --checksum"] / m["same_sum dtcore"]),
    ("difference after a day of change: rsync -a --no-whole-file --delete time / dtcore CLI "
     "time (dtcore <= 0.5x)", 2.0, lambda m, w: m["diff rsync"] / m["diff dtcore"]),
    ("difference after a day of change: rsync wire bytes / dtcore wire bytes (both through one "
     "counting proxy)", 1.0, lambda m, w: w["diff rsync"] / w["diff dtcore"]),
]


def measure(b: Bench, old: Path, new: Path, runs: int
            ) -> tuple[dict[str, list[float]], dict[str, list[int]], list[float]]:
    """(seconds per case, wire bytes per counted case, disk files/s per run)."""
    times: dict[str, list[float]] = {}
    wire: dict[str, list[int]] = {}
    health: list[float] = []

    def note(case: str, seconds: float, nbytes: int = 0) -> None:
        times.setdefault(case, []).append(seconds)
        if nbytes:
            wire.setdefault(case, []).append(nbytes)

    for run in range(runs):
        print(f"run {run + 1}/{runs}", flush=True)
        health.append(disk_health(b.work))
        note("raw socket copy", raw_copy(old))
        # each full mirror goes into a folder never used before, so that no
        # tool creates its files among thousands just deleted: on this
        # machine's ext4 (no journal) every new inode is then checked against
        # each recently freed one, which took a third of both tools' CPU
        # and made either of them up to three times slower at random
        fresh = f"full-{run}"
        full = [("full dtcore", lambda: b.dt(old, "--full", path=f"{fresh}-dtcore")),
                ("full rsync -a", lambda: b.rsync(old, "-a", into=f"{fresh}-a")),
                ("full rsync -a --whole-file",
                 lambda: b.rsync(old, "-a", "--whole-file", into=f"{fresh}-whole")),
                ("full dtcore API (in-process)",
                 lambda: dt_run(b.target.port, old, FULL, False, f"{fresh}-api"))]
        os.sync()
        for case, go in full[run % 4:] + full[:run % 4]:  # each goes first once
            note(case, *go())
        # (case, the state both copies start from, dtcore's run, rsync's label and run)
        pairs = [
            ("diff", old, lambda: b.dt(new, "--checksum", "--orphans", counted=True),
             "rsync", lambda: b.rsync(new, "-a", "--no-whole-file", "--delete", counted=True)),
            ("same_sum", new, lambda: b.dt(new, "--checksum"),
             "rsync -a --checksum", lambda: b.rsync(new, "-a", "--checksum")),
            ("same_attr", new, lambda: b.dt(new, "--no-checksum"),
             "rsync -a", lambda: b.rsync(new, "-a")),
        ]
        for case, state, dt, rsync_label, rs in pairs:
            tools = [("dtcore", b.dt_dest, dt), (rsync_label, b.rs_dest, rs)]
            for tool, dest, go in tools if run % 2 else tools[::-1]:
                local_sync(state, dest)
                note(f"{case} {tool}", *go())
        local_sync(old, b.dt_dest)
        note("diff dtcore API (in-process)", dt_run(b.target.port, new, DIFFERENCE, True)[0])
    return times, wire, health


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir")
    args = ap.parse_args(argv)
    command = f"python -m benchmarks.mirror_summary --scale {args.scale} --runs {args.runs}"
    work = Path(args.dir or tempfile.mkdtemp(prefix="dtcore-bench-"))
    rng = random.Random(7)
    old, new = work / "old", work / "new"
    try:
        print("generating ...", flush=True)
        generate(old, args.scale, rng)
        subprocess.run(["cp", "-a", str(old), str(new)], check=True)
        change(new, rng)
        size = sum(p.stat().st_size for p in old.rglob("*") if p.is_file())
        b = Bench(work)
        try:
            times, wire, health = measure(b, old, new, args.runs)
        finally:
            b.close()
        med = {k: statistics.median(v) for k, v in times.items()}
        wmed = {k: int(statistics.median(v)) for k, v in wire.items()}
        rows = []
        for text, goal, ratio in GOALS:
            r = ratio(med, wmed)
            rows.append({"measure": text, "ratio": r, "goal": goal, "met": r >= goal})
        better = "-a" if med["full rsync -a"] <= med["full rsync -a --whole-file"] else \
            "-a --whole-file"
        out = {"command": command, "dataset_bytes": size, "scale": args.scale,
               "disk_files_per_s": spread(health), "times": {k: spread(v) for k, v in times.items()},
               "wire_bytes": wmed, "goals": rows, "better_rsync_full": better}
        lines = results_head("mirror", out, f"Mirror vs rsync, as processes ({size / 1e9:.2f} "
                             f"GB dataset, {args.runs} runs)", command) + [
            "Each command is a process from spawn to exit: `dtcore mirror` to a `dtcore target` "
            "process, rsync to an rsync daemon, on 127.0.0.1, the tools alternated (each case's "
            "order turns every run). Each full mirror goes into a folder of its own, never "
            "used before (after `os.sync()`), so that none creates its files among thousands "
            "just deleted; the other cases start from a copy put back by a local rsync. The "
            "difference runs both tools through one byte-counting proxy, which counts "
            "everything either way (file lists and manifests included).", "",
            f"Disk health before each run: {spread(health)['median']:,.0f} files created per "
            f"second (min {min(health):,.0f}, max {max(health):,.0f}).", "",
            "| goal | ratio | goal | met |", "|---|---|---|---|"]
        lines += [f"| {r['measure']} | {r['ratio']:.2f} | >= {r['goal']} | "
                  f"{'yes' if r['met'] else 'NO'} |" for r in rows]
        lines += ["", f"The better rsync for the full mirror here: `rsync {better}`.", "",
                  "| case | median s | min s | max s | runs |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['median']:.2f} | {v['min']:.2f} | {v['max']:.2f} | {v['runs']} |"
                  for k, v in out["times"].items()]
        lines += ["", "| wire bytes, median | bytes |", "|---|---|"]
        lines += [f"| {k} | {v:,} |" for k, v in wmed.items()]
        (RESULTS / "mirror.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        for r in rows:
            if not r["met"]:
                print(f"goal missed: {r['measure']}: {r['ratio']:.2f} < {r['goal']}", file=sys.stderr)
        return 0 if all(r["met"] for r in rows) else 1
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
