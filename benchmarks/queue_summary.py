"""Measure the queues against the references of issue 3 in one run and write
bench-results/queues.json and queues.md.

    .venv/bin/python -m benchmarks.queue_summary
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_queue as bq  # noqa: E402
from benchmarks.common import MiB, row, write_results  # noqa: E402

COMMAND = ".venv/bin/python -m benchmarks.queue_summary"


def ratios(pairs: list[tuple[float, float]]) -> dict[str, float]:
    """Median and quartiles of reference/kernel over interleaved pairs."""
    r = [ref / ours for ours, ref in pairs]
    q = statistics.quantiles(r, n=4) if len(r) > 1 else [r[0]] * 3
    return {"ratio": statistics.median(r), "q1": q[0], "q3": q[2]}


def main() -> int:
    rows = []
    n = 200 * 1024
    for kind, goal, scale in (("Queue", 30.0, 10), ("SimpleQueue", 1.5, 1), ("deque", 0.0, 1)):
        pairs = []
        for _ in range(7):
            ours = bq.memq_pair(n, 64)
            pairs.append((ours, bq.stdlib_pair(kind, n // scale, 64) * scale))
        rows.append(row(f"memory queue, 64 B records, producer/consumer threads, batches of "
                        f"{bq.BATCH}: records/s vs {kind} per record", ratios(pairs), goal,
                        note=f"{n / statistics.median(p[0] for p in pairs) / 1e6:.1f} M records/s"))
    # the Linux minimum QMemoryBufferMax, where the ring stays in the caches
    pairs = []
    for _ in range(7):
        pairs.append((bq.memq_pair(n, 64, 32 * MiB), bq.stdlib_pair("SimpleQueue", n, 64)))
    rows.append(row("same, QMemoryBufferMax 32 (the Linux minimum) instead of the default 256: "
                    "records/s vs SimpleQueue per record", ratios(pairs), 1.5,
                    note=f"{n / statistics.median(p[0] for p in pairs) / 1e6:.1f} M records/s"))
    n64k = 4096
    pairs = [(bq.memq_pair(n64k, 65536), bq.stdlib_pair("SimpleQueue", n64k, 65536)) for _ in range(5)]
    rows.append(row("memory queue, 64 KiB records (copied in and out) vs SimpleQueue (passes references)",
                    ratios(pairs), 0.0,
                    note=f"{n64k * 65536 / statistics.median(p[0] for p in pairs) / 1e9:.2f} GB/s"))
    for mib in (256, 32):
        c = sorted(4_000_000 / bq.c_pair(4_000_000, 64, mib * MiB) / 1e6 for _ in range(5))
        rows.append(row(f"memory queue in C, 64 B records between two threads, {mib} MiB ring "
                        f"(M records/s)", {"ratio": statistics.median(c), "q1": c[1], "q3": c[3]},
                        50.0, unit="M/s"))
    pairs = [(bq.disk_buffered(256 * MiB), bq.plain_write(256 * MiB)) for _ in range(9)]
    rows.append(row("disk queue, 64 KiB records, buffered, vs a plain sequential write of the bytes",
                    ratios(pairs), 0.9,
                    note=f"{256 / statistics.median(p[0] for p in pairs):.0f} MB/s"))
    runs = [(bq.write_through(2000) / 2000, bq.fdatasync_each(300) / 300,
             bq.group_bound(150) / 600) for _ in range(7)]
    pairs = [(wt, each) for wt, each, _ in runs]
    rows.append(row("disk queue write-through, 4 KiB records, 4 producers (group commit) vs one "
                    "fdatasync per record", ratios(pairs), 5.0,
                    note=f"{1 / statistics.median(p[0] for p in pairs):.0f} records/s"))
    rows.append(row("bound for 4 producers: one overwrite of 4 framed records + one fdatasync "
                    "per round, no gap between rounds, vs one fdatasync per record",
                    ratios([(bound, each) for _, each, bound in runs]), 0.0))
    rows.append(row("disk queue write-through, 4 producers, vs that bound (share of it reached)",
                    ratios([(wt, bound) for wt, _, bound in runs]), 0.0))
    pairs = [(bq.write_through(2000) / 2000, bq.persist_queue(400) / 400) for _ in range(3)]
    rows.append(row("disk queue write-through, 4 producers, vs persist-queue SQLiteQueue "
                    "(auto_commit, 4 producers)", ratios(pairs), 5.0))
    return write_results("queues", "Queue benchmarks", COMMAND, rows)


if __name__ == "__main__":
    sys.exit(main())
