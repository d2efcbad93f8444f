"""Difference mirrors and profiles against file count, as processes: the
time, files per second and peak RSS of ``dtcore mirror`` (by attributes)
and ``dtcore profile``, with the peak RSS of the ``dtcore target`` process,
against ``rsync -a`` to an rsync daemon on the same tree and changes.

Each file count gets a fresh tree of small files (0.2-2 KiB, a thousand to
a folder), a full mirror to a dtcore target and an rsync to the daemon, and
then ``--runs`` rounds, each changing ``--changed`` of the files and running
profile, dtcore mirror and rsync in turn (all three see the same changes).
A child's peak RSS comes from wait4; the target's from VmHWM, reset before
each command through /proc/PID/clear_refs.  Writes bench-results/scale.md,
scale.json and scale.png (time and memory against file count).

    .venv/bin/python -m benchmarks.scale --files 10000 100000 --runs 3
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import results_head
from benchmarks.mirror_summary import SECRET, DtTarget, RsyncDaemon

OUT = Path(__file__).resolve().parent.parent / "bench-results"
CLI = [sys.executable, "-m", "dtcore.cli.main"]


def generate(root: Path, files: int, rng: random.Random) -> None:
    for i in range(files):
        folder = root / f"d{i // 1000:04}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        (folder / f"f{i:07}.txt").write_bytes(rng.randbytes(rng.randrange(200, 2048)))


def change(root: Path, files: int, fraction: float, rng: random.Random) -> int:
    picked = rng.sample(range(files), max(1, int(files * fraction)))
    for i in picked:
        with open(root / f"d{i // 1000:04}" / f"f{i:07}.txt", "ab") as f:
            f.write(b"one more line\n")
    return len(picked)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """(seconds from spawn to exit, peak RSS in bytes) of one command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{cmd[3:5]} failed: {proc.stderr.read().decode()[-500:]}")
    return seconds, usage.ru_maxrss * 1024


def peak_reset(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def peak(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def measure(files: int, fraction: float, runs: int, work: Path) -> list[dict[str, object]]:
    rng = random.Random(files)
    src, dt_dest, rs_dest = work / "src", work / "dt", work / "rs"
    for p in (dt_dest, rs_dest):
        p.mkdir()
    generate(src, files, rng)
    env = {**os.environ, "DTCORE_SECRET": SECRET, "DTCORE_LOGDIR": str(work / "logs"),
           "PYTHONDONTWRITEBYTECODE": ""}
    target, rsyncd = DtTarget(dt_dest), RsyncDaemon(work, rs_dest)
    address = f"127.0.0.1:{target.port}:dest"
    rows: list[dict[str, object]] = []
    try:
        timed([*CLI, "mirror", "--full", "-q", str(src), address], env)
        rsyncd.run(src, "-a")
        for run in range(runs):
            changed = change(src, files, fraction, rng)
            for tool, cmd in (
                    ("dtcore profile", [*CLI, "profile", "-q", str(src), address]),
                    ("dtcore mirror", [*CLI, "mirror", "-q", str(src), address]),
                    ("rsync -a", None)):
                peak_reset(target.proc.pid)
                if cmd is None:
                    start = time.perf_counter()
                    rsyncd.run(src, "-a")
                    seconds, rss, target_rss = time.perf_counter() - start, 0, 0
                else:
                    seconds, rss = timed(cmd, env)
                    target_rss = peak(target.proc.pid)
                rows.append({"files": files, "changed": changed, "run": run, "tool": tool,
                             "seconds": seconds, "source_rss": rss, "target_rss": target_rss})
    finally:
        target.stop()
        rsyncd.stop()
    return rows


def _q(xs: list[float]) -> tuple[float, float, float]:
    xs = sorted(xs)
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4)
    return q[0], statistics.median(xs), q[2]


def write(rows: list[dict[str, object]], command: str) -> None:
    lines = results_head("scale", rows, "Difference mirrors and profiles against file count",
                         command) + [
             "Each command is a process from spawn to exit; the tools run in turn on the same "
             "changes (see the script's docstring). Peak RSS: the command's own (wait4) and the "
             "dtcore target's (VmHWM, reset before each command); rsync's daemon side is not "
             "measured.", "",
             "| files | changed | tool | seconds median (q1-q3) | files/s | vs rsync | "
             "peak RSS source MB | peak RSS target MB |", "|---|---|---|---|---|---|---|---|"]
    summary = {}
    for files in sorted({int(r["files"]) for r in rows}):  # type: ignore[call-overload]
        group = [r for r in rows if r["files"] == files]
        rsync = _q([float(r["seconds"]) for r in group if r["tool"] == "rsync -a"])[1]  # type: ignore[arg-type]
        for tool in ("dtcore mirror", "dtcore profile", "rsync -a"):
            mine = [r for r in group if r["tool"] == tool]
            q1, med, q3 = _q([float(r["seconds"]) for r in mine])  # type: ignore[arg-type]
            src = max(int(r["source_rss"]) for r in mine) / 1e6  # type: ignore[call-overload]
            tgt = max(int(r["target_rss"]) for r in mine) / 1e6  # type: ignore[call-overload]
            summary[files, tool] = (med, src, tgt)
            lines.append(f"| {files:,} | {mine[0]['changed']:,} | {tool} | {med:.2f} "
                         f"({q1:.2f}-{q3:.2f}) | {files / med:,.0f} | {rsync / med:.2f}x | "
                         + (f"{src:.0f} | {tgt:.0f} |" if tool != "rsync -a" else "- | - |"))
    (OUT / "scale.md").write_text("\n".join(lines) + "\n")
    _plot(summary)


def _plot(summary: dict[tuple[int, str], tuple[float, float, float]]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    fig = Figure(figsize=(10, 4), layout="constrained")
    times, mem = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    counts = sorted({f for f, _ in summary})
    for tool in ("dtcore mirror", "dtcore profile", "rsync -a"):
        times.plot(counts, [summary[f, tool][0] for f in counts], marker="o", label=tool)
    for tool in ("dtcore mirror", "dtcore profile"):
        mem.plot(counts, [summary[f, tool][1] for f in counts], marker="o", label=f"{tool}: source")
        mem.plot(counts, [summary[f, tool][2] for f in counts], marker="s", linestyle="--",
                 label=f"{tool}: target")
    for ax, label in ((times, "seconds"), (mem, "peak RSS, MB")):
        ax.set_xscale("log")
        ax.set_xlabel("files")
        ax.set_ylabel(label)
        ax.legend()
    mem.axhline(200, color="grey", linewidth=0.8)
    fig.savefig(OUT / "scale.png", dpi=90)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--files", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--changed", type=float, default=0.01, help="fraction changed per run")
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args(argv)
    rows = []
    for files in args.files:
        work = Path(tempfile.mkdtemp(prefix="dtbench-scale-"))
        try:
            rows += measure(files, args.changed, args.runs, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    write(rows, "python -m benchmarks.scale " + " ".join(argv if argv is not None else sys.argv[1:]))
    print((OUT / "scale.md").read_text())


if __name__ == "__main__":
    main()
