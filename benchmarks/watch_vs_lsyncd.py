"""`dtcore replicate` against lsyncd, both run as their users run them, on the
same workloads, alternated: ``python -m benchmarks.watch_vs_lsyncd``
(``make bench-watch``) writes bench-results/watch.md and watch.json
(BENCH_RUNS runs per tool and workload, default 2; BENCH_WORKLOADS picks some).

Workloads are the issue's, scaled to run in minutes: 20 writers appending
for 5 s; random 8 KiB page writes into a 256 MiB file for 5 s; 2,000 small
files created, 500 renamed, 500 deleted; a folder of 5,000 files renamed;
one 256 MiB file written.

- dtcore: ``dtcore target`` and ``dtcore replicate SRC HOST:PORT:PATH``
  (fanotify, default 20 ms coalescing).
- lsyncd: ``default.rsync`` to an rsync daemon (``rsync://``), ``delay = 1``
  (the 1 s the issue asks for, tuned down from 15), rsync in archive mode
  with its delta transfer and without compression (loopback: compressing
  only costs CPU) -- its best variant for these jobs.

Both tools reach their target through a byte-counting TCP proxy (wire
bytes). Lag during a run: a probe file rewritten every 100 ms with the
time, read back on the target. Convergence lag: from the writer's end
until every file on the target has the source's size and mtime (polled;
one poll of a 5,000-file tree takes tens of ms, which bounds the smallest
figure). CPU: user+system seconds of the tool's processes and their
children (/proc/PID/stat, once no child is left running) from the
workload's start to convergence."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import Proxy

OUT = Path(__file__).resolve().parents[1] / "bench-results"
EXE = [sys.executable, "-m", "dtcore.cli.main"]
RUNS = int(os.environ.get("BENCH_RUNS", "2"))


# -- plumbing -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_now(procs: list[subprocess.Popen]) -> float:
    """CPU seconds the processes and their waited-for children used so far
    (utime, stime, cutime, cstime of /proc/PID/stat)."""
    total = 0
    for p in procs:
        with open(f"/proc/{p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += sum(int(x) for x in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def settle_children(procs: list[subprocess.Popen], timeout: float = 30) -> None:
    """Wait until the processes have no children left running (lsyncd's and
    the daemon's rsyncs), so that their CPU is in the parents' counts."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        kids = ""
        for p in procs:
            for task in os.listdir(f"/proc/{p.pid}/task"):
                with open(f"/proc/{p.pid}/task/{task}/children") as f:
                    kids += f.read().strip()
        if not kids:
            return
        time.sleep(0.05)


def stop_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if ".dtcore" in dirnames:
            dirnames.remove(".dtcore")
        for name in filenames:
            if name.startswith("probe"):  # the lag probe keeps changing; it is timed apart
                continue
            p = os.path.join(dirpath, name)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns // 1000)
    return out


def wait_same(src: Path, dst: Path, timeout: float = 120) -> float:
    start = time.monotonic()
    want = snapshot(src)
    while time.monotonic() - start < timeout:
        if snapshot(dst) == want:
            return time.monotonic() - start
        time.sleep(0.005)  # finer than the smallest lag measured
    raise TimeoutError(f"{dst} did not converge in {timeout} s")


class Probe:
    """Rewrites SRC/probe with the time every 100 ms; records how long each
    value took to show on the target."""

    def __init__(self, src: Path, dst: Path) -> None:
        self.src, self.dst = src / "probe", dst / "probe"
        self.lags: list[float] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write, daemon=True),
                         threading.Thread(target=self._read, daemon=True)]
        for t in self._threads:
            t.start()

    def _write(self) -> None:
        while not self._stop.wait(0.1):
            tmp = self.src.with_name("probe.tmp")
            tmp.write_text(repr(time.time()))
            os.replace(tmp, self.src)

    def _read(self) -> None:
        seen = ""
        while not self._stop.wait(0.005):
            try:
                text = self.dst.read_text()
            except OSError:
                continue
            if text and text != seen:
                seen = text
                try:
                    self.lags.append(time.time() - float(text))
                except ValueError:
                    pass

    def stop(self) -> list[float]:
        self._stop.set()
        for t in self._threads:
            t.join()
        return self.lags


# -- the tools ---------------------------------------------------------------------------
class Dtcore:
    name = "dtcore replicate"

    def start(self, src: Path, dst_root: Path, work: Path) -> Path:
        env = {**os.environ, "DTCORE_SECRET": "bench", "DTCORE_LOGDIR": str(work / "logs"),
               "DTCORE_QJOURNALDIR": str(work / "q")}
        port = free_port()
        self.target = subprocess.Popen([*EXE, "target", "--root", str(dst_root), "--create",
                                        "--port", str(port), "--host", "127.0.0.1"], env=env,
                                       stdout=subprocess.PIPE, text=True)
        self.target.stdout.readline()
        self.proxy = Proxy(port)
        self.source = subprocess.Popen([*EXE, "replicate", str(src),
                                        f"127.0.0.1:{self.proxy.port}:job", "--interval", "3600"],
                                       env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL, text=True)
        while "replicating" not in (self.source.stdout.readline() or "replicating"):
            pass
        self.procs = [self.source, self.target]
        return dst_root / "job"


class Lsyncd:
    name = "lsyncd + rsync daemon"

    def start(self, src: Path, dst_root: Path, work: Path) -> Path:
        dst_root.mkdir(parents=True, exist_ok=True)
        conf = work / "rsyncd.conf"
        conf.write_text(f"use chroot = false\nuid = root\ngid = root\n[mod]\npath = {dst_root}\n"
                        "read only = false\n")
        port = free_port()
        self.daemon = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={conf}",
                                        f"--port={port}", "--address=127.0.0.1"])
        time.sleep(0.3)
        self.proxy = Proxy(port)
        lua = work / "lsyncd.lua"
        lua.write_text(f"""
settings {{ nodaemon = true, insist = true, logfile = "{work}/lsyncd.log" }}
sync {{ default.rsync, source = "{src}", target = "rsync://127.0.0.1:{self.proxy.port}/mod/",
        delay = 1, rsync = {{ archive = true, compress = false, whole_file = false }} }}
""")
        self.lsyncd = subprocess.Popen(["lsyncd", str(lua)], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        wait_same(src, dst_root, 300)
        self.procs = [self.lsyncd, self.daemon]
        return dst_root


# -- the workloads -------------------------------------------------------------------------
def prepare(name: str, src: Path, rng: random.Random) -> None:
    if name == "page writes":
        with open(src / "db.img", "wb") as f:
            for _ in range(256):
                f.write(rng.randbytes(1 << 20))
    elif name == "folder rename":
        (src / "album").mkdir()
        for i in range(5000):
            (src / "album" / f"p{i:04d}").write_bytes(rng.randbytes(512))


def run_workload(name: str, src: Path, rng: random.Random) -> None:
    if name == "log appends":  # 20 writers, 5 s
        def writer(k: int) -> None:
            with open(src / f"app{k}.log", "ab") as f:
                end = time.monotonic() + 5
                while time.monotonic() < end:
                    f.write(b"%f event from writer %d\n" % (time.time(), k))
                    f.flush()
                    time.sleep(0.01)
        threads = [threading.Thread(target=writer, args=(k,)) for k in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elif name == "page writes":  # 8 KiB pages at random into 256 MiB, 5 s
        with open(src / "db.img", "r+b") as f:
            end = time.monotonic() + 5
            while time.monotonic() < end:
                f.seek(rng.randrange(32768) * 8192)
                f.write(rng.randbytes(8192))
                f.flush()
                time.sleep(0.005)
    elif name == "small files":  # 2,000 created, 500 renamed, 500 deleted
        (src / "mail").mkdir()
        for i in range(2000):
            (src / "mail" / f"m{i}").write_bytes(rng.randbytes(rng.randrange(200, 4000)))
        for i in range(0, 1000, 2):
            os.rename(src / "mail" / f"m{i}", src / "mail" / f"kept{i}")
        for i in range(1, 1000, 2):
            os.unlink(src / "mail" / f"m{i}")
    elif name == "folder rename":
        os.rename(src / "album", src / "album-2026")
    elif name == "one file written":  # 256 MiB of random bytes in 1 MiB writes, as a copy does
        blocks = [rng.randbytes(1 << 20) for _ in range(256)]
        with open(src / "video.mp4", "wb") as f:
            for block in blocks:
                f.write(block)


WORKLOADS = [w for w in os.environ.get("BENCH_WORKLOADS", "").split(",") if w] or [
    "log appends", "page writes", "small files", "folder rename", "one file written"]


def measure(tool, name: str, seed: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-watch-", dir=os.environ.get("DTCORE_BENCH_DIR")))
    src, dst_root = work / "src", work / "dst"
    src.mkdir()
    rng = random.Random(seed)
    prepare(name, src, rng)
    dst = tool.start(src, dst_root, work)
    wait_same(src, dst)
    before, cpu0 = tool.proxy.bytes, cpu_now(tool.procs)
    probe = Probe(src, dst)
    t0 = time.monotonic()
    run_workload(name, src, rng)
    ran = time.monotonic() - t0
    converge = wait_same(src, dst)
    lags = probe.stop()
    wire = tool.proxy.bytes - before
    settle_children(tool.procs)
    cpu = cpu_now(tool.procs) - cpu0
    stop_all(tool.procs)
    tool.proxy.close()
    shutil.rmtree(work, ignore_errors=True)
    lags.sort()
    pick = (lambda q: lags[min(len(lags) - 1, int(q * len(lags)))] if lags else float("nan"))
    return {"tool": tool.name, "workload": name, "seconds": ran, "converge_s": converge,
            "lag_p50_s": pick(0.5), "lag_p99_s": pick(0.99), "wire_bytes": wire,
            "cpu_s": cpu}


def goals_missed(rows: list[dict]) -> list[str]:
    """Issue 19's goals, from the medians: dtcore's convergence lag at most a
    tenth of lsyncd's and its wire bytes at most lsyncd's on every workload,
    and on page writes at most a twentieth of lsyncd's CPU."""
    missed = []
    for name in WORKLOADS:
        med = {tool: {k: statistics.median(r[k] for r in rows
                                           if r["workload"] == name and r["tool"] == tool)
                      for k in ("converge_s", "wire_bytes", "cpu_s")}
               for tool in ("dtcore replicate", "lsyncd + rsync daemon")}
        dt, ls = med["dtcore replicate"], med["lsyncd + rsync daemon"]
        if dt["converge_s"] > ls["converge_s"] / 10:
            missed.append(f"{name}: convergence {dt['converge_s']:.3f} s > 1/10 of {ls['converge_s']:.3f} s")
        if dt["wire_bytes"] > ls["wire_bytes"]:
            missed.append(f"{name}: wire bytes {dt['wire_bytes']:,} > {ls['wire_bytes']:,}")
        if name == "page writes" and dt["cpu_s"] > ls["cpu_s"] / 20:
            missed.append(f"{name}: CPU {dt['cpu_s']:.2f} s > 1/20 of {ls['cpu_s']:.2f} s")
    return missed


def main() -> int:
    rows = []
    for name in WORKLOADS:
        for r in range(RUNS):  # alternated: dtcore, lsyncd, dtcore, lsyncd ...
            for tool in (Dtcore(), Lsyncd()):
                row = measure(tool, name, seed=r)
                print(json.dumps(row), flush=True)
                rows.append(row)
    OUT.mkdir(exist_ok=True)
    (OUT / "watch.json").write_text(json.dumps(rows, indent=1))
    lines = ["# dtcore replicate vs lsyncd", "",
             f"`make bench-watch` ({RUNS} alternated runs per tool and workload; medians, "
             "range in brackets). See benchmarks/watch_vs_lsyncd.py for the setup.", "",
             "| workload | tool | convergence lag s | lag p50 s | lag p99 s | wire MB | CPU s |",
             "|---|---|---|---|---|---|---|"]
    for name in WORKLOADS:
        for tool in ("dtcore replicate", "lsyncd + rsync daemon"):
            sel = [r for r in rows if r["workload"] == name and r["tool"] == tool]

            def cell(key: str, scale: float = 1.0, fmt: str = "{:.3f}") -> str:
                # no lag sample: the workload ended before the probe changed
                vals = [r[key] / scale for r in sel if r[key] == r[key]]
                if not vals:
                    return "n/a"
                return (fmt.format(statistics.median(vals)) + " [" + fmt.format(min(vals)) + "–"
                        + fmt.format(max(vals)) + "]")
            lines.append(f"| {name} | {tool} | {cell('converge_s')} | {cell('lag_p50_s')} | "
                         f"{cell('lag_p99_s')} | {cell('wire_bytes', 1e6, '{:.2f}')} | "
                         f"{cell('cpu_s', 1, '{:.2f}')} |")
    missed = goals_missed(rows)
    lines += ["", "Goals missed: " + ("; ".join(missed) if missed else "none") + "."]
    (OUT / "watch.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    for m in missed:
        print(f"goal missed: {m}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
