"""Measure every kernel against its same-run reference and write
bench-results/kernels.json and bench-results/summary.md.

    .venv/bin/python -m benchmarks.summarize
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dtcore  # noqa: E402
from benchmarks import bench_checksum, bench_compression, bench_delta, bench_merge  # noqa: E402
from benchmarks.common import MiB, best_of, paired, row, write_results  # noqa: E402
from dtcore._native import _checksum  # noqa: E402
from dtcore.model.ops import merge_batch, pack_batch  # noqa: E402

COMMAND = ".venv/bin/python -m benchmarks.summarize"


def main() -> int:
    rows = []
    fc = bench_checksum.FileChecksum()
    fc.setup()
    try:
        m = paired(lambda: dtcore.file_checksums(fc.paths[0]),
                   lambda: bench_checksum.read_reference(fc.paths[0]), repeats=11)
        rows.append(row("checksum 256 MiB warm file vs read() into a reused 1 MiB buffer", m, 0.75,
                        note=f"{256 * MiB / m['kernel_s'] / 1e9:.1f} GB/s vs "
                             f"{256 * MiB / m['reference_s'] / 1e9:.1f} GB/s"))
        two = paired(lambda: bench_checksum.in_threads(dtcore.file_checksums, fc.paths),
                     lambda: dtcore.file_checksums(fc.paths[0]), repeats=11)
        two = {k: v * 2 if k in ("ratio", "q1", "q3") else v for k, v in two.items()}
        half = [np.frombuffer(bench_checksum.random_bytes(64 * MiB, seed=s), dtype=np.uint8)
                for s in (3, 4)]
        ref2 = paired(lambda: bench_checksum.in_threads(_checksum.ref_sum64, half),
                      lambda: _checksum.ref_sum64(half[0]), repeats=11)
        rows.append(row("checksum: two threads on two files vs one thread on one", two, 1.7,
                        note=f"same-run machine reference: the C sum64 pass scales "
                             f"{ref2['ratio'] * 2:.2f}x with two threads"))
    finally:
        fc.teardown()

    bc = bench_checksum.BufferChecksum()
    bc.setup()
    m = paired(lambda: dtcore.block_checksums(bc.buf), lambda: _checksum.ref_sum64(bc.buf))
    rows.append(row("checksum 64 MiB buffer vs C pass summing 64-bit words", m, 0.60,
                    note=f"{64 * MiB / m['kernel_s'] / 1e9:.1f} GB/s"))

    ms = bench_merge.MergeSequential()
    ms.setup()
    m = paired(ms.merge, lambda: np.copyto(ms.dst, ms.src))
    rows.append(row("merge 4 KiB sequential writes (32 MiB, reused output buffer) vs memcpy of the bytes", m, 0.50,
                    note=f"{32 * MiB / m['kernel_s'] / 1e9:.2f} GB/s payload"))
    py = paired(lambda: merge_batch(ms.batch), lambda: bench_merge.merge_ops(ms.ops, 65536),
                repeats=3)
    rows.append(row("merge 4 KiB sequential writes vs the plain-Python merge", py, 1.0))

    mr = bench_merge.MergeRandom()
    mr.setup()
    secs = [best_of(mr.merge, 1) for _ in range(9)]
    rates = sorted(len(mr.ops) / s / 1e6 for s in secs)
    rows.append(row("merge 64-byte random overlapping writes, 300 files (Mops/s)",
                    {"ratio": rates[4], "q1": rates[2], "q3": rates[6]}, 5.0, unit="Mops/s"))
    small = mr.ops[:20_000]
    sb = pack_batch(small)
    py = paired(lambda: merge_batch(sb), lambda: bench_merge.merge_ops(small, 65536), repeats=3)
    rows.append(row("merge 64-byte random writes vs the plain-Python merge", py, 1.0))

    for kind in bench_compression.KINDS:
        c = bench_compression.Compression()
        c.setup(kind)
        m = paired(c.ours, c.raw_lz4)
        rows.append(row(f"compress 16 MiB of 64 KiB blocks ({kind}), one call, vs lz4.block.compress per block",
                        m, 0.95))

    d = bench_delta.Delta()
    d.setup()
    t_roll = [best_of(d.time_rolling_delta, 1) for _ in range(5)]
    t_align = [best_of(d.time_aligned_compare, 1) for _ in range(5)]
    ratios = sorted(a / r for a, r in zip(t_align, t_roll))
    roll_bytes, aligned_bytes = d.track_rolling_bytes_sent(), d.track_aligned_bytes_sent()
    rows.append(row("rolling delta 256 MiB, 100 B inserted: speed vs aligned compare",
                    {"ratio": ratios[2], "q1": ratios[1], "q3": ratios[3]}, 0.0,
                    note=f"rolling {256 * MiB / sorted(t_roll)[2] / 1e9:.2f} GB/s, aligned "
                         f"{256 * MiB / sorted(t_align)[2] / 1e9:.2f} GB/s; bytes sent: rolling "
                         f"{roll_bytes:,}, aligned {aligned_bytes:,}"))

    return write_results("kernels", "Kernel benchmarks", COMMAND, rows)

if __name__ == "__main__":
    sys.exit(main())
