"""Seeded data and the paired measurement every ratio uses: the kernel and
its reference run alternately in one process, so machine noise hits both."""
from __future__ import annotations

import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable

import numpy as np

MiB = 1 << 20


def random_bytes(n: int, seed: int = 1) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def log_like(n: int, seed: int = 2) -> bytes:
    rng = random.Random(seed)
    words = [b"replication", b"mirror", b"ok", b"queued", b"target", b"source", b"bytes",
             b"connection", b"4019", b"INFO", b"WARN", b"checksum"]
    out = bytearray()
    i = 0
    while len(out) < n:
        out += b"2026-11-24 12:%02d:%02d.%03d pid=%d " % (i // 3600 % 60, i // 60 % 60, i % 1000,
                                                           rng.randrange(1000, 1100))
        out += b" ".join(rng.choice(words) for _ in range(rng.randrange(4, 12))) + b"\n"
        i += 1
    return bytes(out[:n])


def zeros(n: int) -> bytes:
    return bytes(n)


def temp_file(data: bytes, directory: str | None = None) -> str:
    fd, path = tempfile.mkstemp(prefix="dtbench-", dir=directory)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def best_of(fn: Callable[[], object], n: int = 3) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def paired(kernel: Callable[[], object], reference: Callable[[], object],
           repeats: int = 15) -> dict[str, float]:
    """Speed of ``kernel`` relative to ``reference`` (1.0 = as fast).

    Returns the median ratio over interleaved runs, its quartiles, and the
    median seconds of each side."""
    kernel()
    reference()
    tk, tr, ratios = [], [], []
    for i in range(repeats):
        order = (kernel, reference) if i % 2 == 0 else (reference, kernel)
        t = {}
        for fn in order:
            s = time.perf_counter()
            fn()
            t[fn] = time.perf_counter() - s
        tk.append(t[kernel])
        tr.append(t[reference])
        ratios.append(t[reference] / t[kernel])
    q = statistics.quantiles(ratios, n=4)
    return {"ratio": statistics.median(ratios), "q1": q[0], "q3": q[2],
            "kernel_s": statistics.median(tk), "reference_s": statistics.median(tr)}


def row(name: str, m: dict, goal: float, unit: str = "x", note: str = "") -> dict:
    """One result line: a paired() measurement and its goal."""
    return {"measure": name, "median": round(m["ratio"], 3), "q1": round(m.get("q1", m["ratio"]), 3),
            "q3": round(m.get("q3", m["ratio"]), 3), "unit": unit, "goal": goal,
            "met": m["ratio"] >= goal, "note": note}


def write_results(stem: str, title: str, command: str, rows: list[dict]) -> int:
    """bench-results/<stem>.json and, for kernels, summary.md (else <stem>.md);
    returns the exit status of a summary command: 1 when a goal was missed."""
    import json
    import os
    import platform
    import subprocess
    from pathlib import Path
    out = Path(__file__).resolve().parents[1] / "bench-results"
    meta = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                     text=True).stdout.strip(),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
            "python": platform.python_version()}
    out.mkdir(exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [f"# {title}\n", f"Command: `{command}` (commit {meta['commit']}, "
             f"{meta['date']}, {meta['machine']}, Python {meta['python']}).\n",
             "Each figure is the median of interleaved runs against its reference in the same "
             "process (q1-q3 is the interquartile range).\n",
             "| measure | median | q1-q3 | goal | met | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['measure']} | {r['median']} {r['unit']} | {r['q1']}-{r['q3']} | "
                     f">= {r['goal']} | {'yes' if r['met'] else 'NO'} | {r['note']} |")
    (out / ("summary.md" if stem == "kernels" else f"{stem}.md")).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    missed = [r["measure"] for r in rows if not r["met"]]
    for m in missed:
        print(f"goal missed: {m}", file=sys.stderr)
    return 1 if missed else 0


def results_head(name: str, rows: object, title: str, command: str) -> list[str]:
    """Write ``rows`` to bench-results/<name>.json and return the markdown
    head of bench-results/<name>.md: the title and the command, commit,
    date and machine that made it."""
    import json
    import platform
    from pathlib import Path
    out = Path(__file__).resolve().parent.parent / "bench-results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(rows, indent=1) + "\n")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    return [f"# {title}", "", f"Command: `{command}` (commit {head}, "
            f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} cpus).",
            ""]


class Proxy:
    """Forwards 127.0.0.1:port to ``upstream``, counting bytes both ways
    (``bytes``); with ``rate``, the client-to-upstream direction is paced to
    that many bytes a second by a token bucket (the replies go straight back)."""

    def __init__(self, upstream: int, rate: float = 0.0) -> None:
        self.upstream, self.rate = upstream, rate
        self.bytes = 0
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.sock.getsockname()[1]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                a, _ = self.sock.accept()
            except OSError:
                return
            b = socket.create_connection(("127.0.0.1", self.upstream))
            for s in (a, b):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for x, y, rate in ((a, b, self.rate), (b, a, 0.0)):
                threading.Thread(target=self._pipe, args=(x, y, rate), daemon=True).start()

    def _pipe(self, x: socket.socket, y: socket.socket, rate: float) -> None:
        start, moved = time.monotonic(), 0
        try:
            while data := x.recv(256 << 10):
                if rate:
                    moved += len(data)
                    ahead = moved / rate - (time.monotonic() - start)
                    if ahead > 0:
                        time.sleep(ahead)
                y.sendall(data)
                with self._lock:
                    self.bytes += len(data)
        except OSError:
            pass
        finally:
            for s in (x, y):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()




def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """(seconds from spawn to exit, peak RSS in bytes, standard output) of one
    command, which must succeed."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd[:6])} failed ({proc.returncode}): "
                               f"{err.read().decode(errors='replace')[-500:]}")
        return seconds, usage.ru_maxrss * 1024, out.read().decode(errors="replace")
