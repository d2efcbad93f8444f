"""Compression that decides by itself, on links of three speeds: full mirrors
through a throttling proxy at 100 Mbit/s and 1 Gbit/s, and straight over
loopback, with ``--compress auto`` against ``always`` and ``never``.

The tree is half log-like text (lz4 shrinks it several times) and half
random bytes (lz4 cannot).  Each run is ``dtcore mirror --full`` as a process
from spawn to exit, to a ``dtcore target`` process; the three modes take
turns within each round.  The proxy (benchmarks.common.Proxy) paces the
source-to-target direction with a token bucket.  Writes
bench-results/compression.md and compression.json.

    .venv/bin/python -m benchmarks.compression_link --runs 3
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Proxy, log_like, random_bytes, results_head
from benchmarks.mirror_summary import SECRET, DtTarget

OUT = Path(__file__).resolve().parent.parent / "bench-results"
CLI = [sys.executable, "-m", "dtcore.cli.main"]
MODES = ("auto", "always", "never")
RATES = {"100 Mbit/s": 100e6 / 8, "1 Gbit/s": 1e9 / 8, "loopback": 0.0}


def generate(root: Path, mib: int) -> None:
    root.mkdir(parents=True)
    for i in range(mib // 8):
        (root / f"log{i:03}.txt").write_bytes(log_like(4 << 20, seed=i))
        (root / f"blob{i:03}.bin").write_bytes(random_bytes(4 << 20, seed=1000 + i))


def run(mode: str, src: Path, port: int, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([*CLI, "mirror", "--full", "-q", "--compress", mode, str(src),
                    f"127.0.0.1:{port}:dest"], env=env, check=True)
    return time.perf_counter() - start


def _q(xs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return q[0], statistics.median(xs), q[2]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--mib", type=int, default=96, help="size of the tree (half text, half random)")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="dtbench-compress-"))
    rows: list[dict[str, object]] = []
    try:
        generate(work / "src", args.mib)
        (work / "dt").mkdir()
        env = {**os.environ, "DTCORE_SECRET": SECRET, "DTCORE_LOGDIR": str(work / "logs")}
        target = DtTarget(work / "dt")
        try:
            for label, rate in RATES.items():
                proxy = Proxy(target.port, rate) if rate else None
                port = proxy.port if proxy else target.port
                for r in range(args.runs):
                    for mode in (MODES[r % 3:] + MODES[:r % 3]):  # each mode leads a round
                        rows.append({"link": label, "mode": mode, "run": r,
                                     "seconds": run(mode, work / "src", port, env)})
                if proxy:
                    proxy.close()
        finally:
            target.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return write(rows, args)


def write(rows: list[dict[str, object]], args: argparse.Namespace) -> int:
    """The table; returns 1 when auto missed its goal on some link."""
    missed = []
    lines = results_head("compression", rows, "Compression that decides by itself",
                         f"python -m benchmarks.compression_link --runs {args.runs} "
                         f"--mib {args.mib}") + [
             f"Full mirrors of {args.mib} MiB (half text, half random) as processes, the modes "
             "alternated; the goal is auto no slower than the better of always and never "
             "on every link.", "",
             "| link | auto s | always s | never s | auto / best | met |", "|---|---|---|---|---|---|"]
    for label in RATES:
        med = {}
        cells = []
        for mode in MODES:
            q1, m, q3 = _q([float(r["seconds"]) for r in rows  # type: ignore[arg-type]
                            if r["link"] == label and r["mode"] == mode])
            med[mode] = m
            cells.append(f"{m:.2f} ({q1:.2f}-{q3:.2f})")
        best = min(med["always"], med["never"])
        ratio = med["auto"] / best
        lines.append(f"| {label} | {' | '.join(cells)} | {ratio:.2f} | "
                     f"{'yes' if ratio <= 1.05 else 'NO'} |")
        if ratio > 1.05:
            missed.append(label)
    lines += ["", "Medians with q1-q3; met allows 5 % for this shared machine's noise."]
    (OUT / "compression.md").write_text("\n".join(lines) + "\n")
    print((OUT / "compression.md").read_text())
    for label in missed:
        print(f"goal missed: auto is slower than the better fixed mode on the {label} link",
              file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
