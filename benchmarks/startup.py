"""How long a command takes before it does any work, timed as a process
from spawn to exit: ``python -m benchmarks.startup`` (``make bench-startup``)
writes bench-results/startup.md and startup.json.

Each command is run BENCH_RUNS times (default 30), alternated with the
reference, ``python -c pass`` of the same interpreter: what a command adds
to it is the import of what the command needs (the issue's goal: at most
80 ms).  Bytecode is cached, as it is for an installed package.  Medians and the spread between the quartiles; the machine is
shared, so only figures of one run are compared with each other."""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench-results"
DTCORE = str(Path(sys.executable).with_name("dtcore"))
EMPTY = tempfile.mkdtemp(prefix="dtcore-startup-")
# (argv, the exit code it ends with)
COMMANDS = {
    "python -c pass (reference)": ([sys.executable, "-c", "pass"], 0),
    "dtcore --version": ([DTCORE, "--version"], 0),
    "dtcore mirror --help": ([DTCORE, "mirror", "--help"], 0),
    "dtcore config get NetPort": ([DTCORE, "config", "get", "NetPort"], 0),
    # all that a mirror loads before its first file: it gets as far as the
    # connection, which nothing on port 1 accepts (exit 5, network)
    "dtcore mirror to a closed port": ([DTCORE, "mirror", "-q", EMPTY, "127.0.0.1:1:copy"], 5),
    "python -c 'import dtcore; dtcore.Engine'": ([sys.executable, "-c",
                                                  "import dtcore; dtcore.Engine"], 0),
}
GOAL_MS = 80


# as an installed package runs: its bytecode cached (this machine's
# environment sets PYTHONDONTWRITEBYTECODE, which would compile every module
# from source in every process)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["DTCORE_CONF"] = "/nonexistent/DT.conf"
ENV["DTCORE_SECRET"] = "startup"


def _once(command: tuple[list[str], int]) -> float:
    argv, expected = command
    start = time.perf_counter()
    rc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        env=ENV).returncode
    took = time.perf_counter() - start
    if rc != expected:
        raise RuntimeError(f"{' '.join(argv)} ended with {rc}, not {expected}")
    return took


def _quartiles(xs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4)
    return q[0], statistics.median(xs), q[2]


def main() -> int:
    runs = int(os.environ.get("BENCH_RUNS", "30"))
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for command in COMMANDS.values():  # a first run writes the bytecode caches
        _once(command)
    for _ in range(runs):  # alternated, so a slow spell of the machine hits every command
        for name, command in COMMANDS.items():
            times[name].append(_once(command))
    ref = statistics.median(times["python -c pass (reference)"])
    rows, data = [], {}
    for name, xs in times.items():
        lo, med, hi = _quartiles(xs)
        added = (med - ref) * 1000
        data[name] = {"median_s": med, "q1_s": lo, "q3_s": hi, "added_ms": added, "runs": runs}
        rows.append(f"| `{name}` | {med * 1000:.0f} ({lo * 1000:.0f}-{hi * 1000:.0f}) | "
                    f"{added:+.0f} |")
    commands = [n for n in COMMANDS if n.startswith("dtcore")]
    worst = max(data[n]["added_ms"] for n in commands)
    met = worst <= GOAL_MS
    OUT.mkdir(exist_ok=True)
    (OUT / "startup.json").write_text(json.dumps(data, indent=1) + "\n")
    (OUT / "startup.md").write_text(
        "# Start-up of the commands\n\n"
        f"`python -m benchmarks.startup` (BENCH_RUNS={runs}, alternated), each a process from "
        "spawn to exit. Milliseconds: median (first to third quartile), and what it adds to "
        "`python -c pass`.\n\n"
        "| command | ms | added to the reference |\n|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"Goal: a command adds at most {GOAL_MS} ms. Worst command: {worst:+.0f} ms: "
        f"{'met' if met else 'NOT met'}.\n")
    print((OUT / "startup.md").read_text())
    return 0 if met else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        shutil.rmtree(EMPTY, ignore_errors=True)
