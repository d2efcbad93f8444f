"""Difference mirrors and profiles against file count, as processes: the
time, files per second and peak RSS of ``dtcore mirror`` by attributes and
by checksum and of ``dtcore profile`` (which hashes, as ChecksumAll 1 does),
with the peak RSS of the ``dtcore target`` process, against rsync to an
rsync daemon in the same mode (``-a``; ``-a --checksum``) on the same tree
and changes.

Each file count gets a fresh tree of small files (0.2-2 KiB, a thousand to
a folder), full copies (one per mode and tool, timed as the "first copy"
rows: two runs of each, the tools in turn), and then ``--runs`` rounds,
each changing ``--changed`` of the files and running every tool of TOOLS in
turn (all see the same changes).  A child's peak RSS comes from wait4; the
target's from VmHWM, reset before each command through
/proc/PID/clear_refs.  Writes bench-results/scale.md, scale.json and
scale.png (time and memory against file count; ``--name`` names them).  ``--work`` puts the trees
elsewhere, such as a tmpfs (/dev/shm), where the disk does not bound file
creation and what is left is each tool's own cost per file.

    .venv/bin/python -m benchmarks.scale --files 10000 100000 --runs 3
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.common import results_head, timed
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


def peak_reset(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def peak(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


# (tool, dtcore command or rsync flags, where it copies to, its reference):
# each mode against rsync in the same mode, each with a copy of its own so
# that all of them see the same changes
TOOLS = (
    ("dtcore profile", ["profile", "-q"], "dest", "rsync -a --checksum"),
    ("dtcore mirror --no-checksum", ["mirror", "-q", "--no-checksum"], "dest", "rsync -a"),
    ("rsync -a", ["-a"], "", None),
    ("dtcore mirror --checksum", ["mirror", "-q", "--checksum"], "sums", "rsync -a --checksum"),
    ("rsync -a --checksum", ["-a", "--checksum"], "sums", None),
)
# the two first copies of each tree (one per copy of its own), timed too:
# a full mirror of many small files against rsync's first copy
COPIES = (
    ("dtcore mirror --full (first copy)", ["mirror", "--full", "-q"], "", "rsync -a (first copy)"),
    ("rsync -a (first copy)", ["-a"], "", None),
)


def measure(files: int, fraction: float, runs: int, work: Path) -> list[dict[str, object]]:
    rng = random.Random(files)
    src, dt_dest, rs_dest = work / "src", work / "dt", work / "rs"
    for p in (dt_dest, rs_dest):
        p.mkdir()
    generate(src, files, rng)
    env = {**os.environ, "DTCORE_SECRET": SECRET, "DTCORE_LOGDIR": str(work / "logs"),
           "PYTHONDONTWRITEBYTECODE": ""}
    target, rsyncd = DtTarget(dt_dest), RsyncDaemon(work, rs_dest)
    rows: list[dict[str, object]] = []
    try:
        for run, into in enumerate(("dest", "sums")):
            peak_reset(target.proc.pid)
            seconds, rss, _ = timed([*CLI, "mirror", "--full", "-q", str(src),
                                     f"127.0.0.1:{target.port}:{into}"], env)
            rows.append({"files": files, "changed": files, "run": run, "tool": COPIES[0][0],
                         "seconds": seconds, "source_rss": rss,
                         "target_rss": peak(target.proc.pid)})
            seconds = rsyncd.run(src, "-a", into="" if into == "dest" else into)[0]
            rows.append({"files": files, "changed": files, "run": run, "tool": COPIES[1][0],
                         "seconds": seconds, "source_rss": 0, "target_rss": 0})
        for run in range(runs):
            changed = change(src, files, fraction, rng)
            for tool, args, into, _ in TOOLS:
                peak_reset(target.proc.pid)
                if tool.startswith("rsync"):
                    seconds = rsyncd.run(src, *args, into=into)[0]
                    rss = target_rss = 0
                else:
                    seconds, rss, _ = timed([*CLI, *args, str(src), f"127.0.0.1:{target.port}:{into}"],
                                            env)
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


def write(rows: list[dict[str, object]], command: str, name: str = "scale") -> int:
    """The table and plot; returns 1 when a dtcore mirror missed issue 23's
    goals (files per second at least rsync's in its mode, peak RSS of each
    side at most 200 MB)."""
    missed = []
    lines = results_head(name, rows, "Difference mirrors and profiles against file count",
                         command) + [
             "Each command is a process from spawn to exit; the tools run in turn on the same "
             "changes (see the script's docstring). Peak RSS: the command's own (wait4) and the "
             "dtcore target's (VmHWM, reset before each command); rsync's daemon side is not "
             "measured.", "",
             "| files | changed | tool | seconds median (q1-q3) | files/s | speed vs rsync "
             "in the same mode | "
             "peak RSS source MB | peak RSS target MB |", "|---|---|---|---|---|---|---|---|"]
    summary = {}
    for files in sorted({int(r["files"]) for r in rows}):  # type: ignore[call-overload]
        group = [r for r in rows if r["files"] == files]
        medians = {tool: _q([float(r["seconds"]) for r in group if r["tool"] == tool])  # type: ignore[arg-type]
                   for tool, *_ in TOOLS + COPIES}
        for tool, _, _, reference in TOOLS + COPIES:
            mine = [r for r in group if r["tool"] == tool]
            q1, med, q3 = medians[tool]
            src = max(int(r["source_rss"]) for r in mine) / 1e6  # type: ignore[call-overload]
            tgt = max(int(r["target_rss"]) for r in mine) / 1e6  # type: ignore[call-overload]
            summary[files, tool] = (med, src, tgt)
            versus = f"{medians[reference][1] / med:.2f}x {reference}" if reference else "-"
            if tool.startswith("dtcore mirror") and reference and (
                    medians[reference][1] < med or max(src, tgt) > 200):
                missed.append(f"{files:,} files, {tool}: {medians[reference][1] / med:.2f}x "
                              f"{reference}, peak RSS {src:.0f} / {tgt:.0f} MB")
            lines.append(f"| {files:,} | {mine[0]['changed']:,} | {tool} | {med:.2f} "
                         f"({q1:.2f}-{q3:.2f}) | {files / med:,.0f} | {versus} | "
                         + (f"{src:.0f} | {tgt:.0f} |" if reference else "- | - |"))
    lines += ["", "Goals missed: " + ("; ".join(missed) if missed else "none") + "."]
    (OUT / f"{name}.md").write_text("\n".join(lines) + "\n")
    _plot(summary, name)
    for m in missed:
        print(f"goal missed: {m}", file=sys.stderr)
    return 1 if missed else 0


def _plot(summary: dict[tuple[int, str], tuple[float, float, float]], name: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    fig = Figure(figsize=(10, 4), layout="constrained")
    times, mem = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    counts = sorted({f for f, _ in summary})
    for tool, *_ in TOOLS:
        times.plot(counts, [summary[f, tool][0] for f in counts], marker="o", label=tool)
    for tool in ("dtcore mirror --no-checksum", "dtcore profile"):
        mem.plot(counts, [summary[f, tool][1] for f in counts], marker="o", label=f"{tool}: source")
        mem.plot(counts, [summary[f, tool][2] for f in counts], marker="s", linestyle="--",
                 label=f"{tool}: target")
    for ax, label in ((times, "seconds"), (mem, "peak RSS, MB")):
        ax.set_xscale("log")
        ax.set_xlabel("files")
        ax.set_ylabel(label)
        ax.legend()
    mem.axhline(200, color="grey", linewidth=0.8)
    fig.savefig(OUT / f"{name}.png", dpi=90)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--files", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--changed", type=float, default=0.01, help="fraction changed per run")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--work", help="where the trees go (default: the temporary folder)")
    p.add_argument("--name", default="scale", help="bench-results/NAME.md, .json and .png")
    args = p.parse_args(argv)
    rows = []
    for files in args.files:
        work = Path(tempfile.mkdtemp(prefix="dtbench-scale-", dir=args.work))
        try:
            rows += measure(files, args.changed, args.runs, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    status = write(rows, "python -m benchmarks.scale " +
                   " ".join(argv if argv is not None else sys.argv[1:]), args.name)
    print((OUT / f"{args.name}.md").read_text())
    return status


if __name__ == "__main__":
    sys.exit(main())
