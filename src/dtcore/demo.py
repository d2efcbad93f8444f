"""README's main job (until the engine lands): generate a replication set and
a stale target copy of it, then profile a difference mirror with the native
kernels: which blocks differ, what the aligned compare and the rolling delta
would each send, what compression saves, and how write merging shrinks a
stream of small writes.  Every rebuilt file is checked against its source.

    python -m dtcore.demo [--dir DIR] [--files N] [--seed S]
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import dtcore
from dtcore import Op, OpKind

BLOCK = 65536


def generate(root: Path, files: int, rng: random.Random) -> None:
    words = [b"mirror", b"replication", b"target", b"source", b"queue", b"ok", b"4019"]
    for i in range(files):
        d = root / f"dir{i % 7}" / f"sub{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        size = rng.choice([0, 1500, 20_000, 200_000, 3_000_000])
        if i % 2:
            data = rng.randbytes(size)
        else:
            data = b"".join(b" ".join(rng.choices(words, k=8)) + b"\n"
                            for _ in range(size // 40 + 1))[:size]
        (d / f"file{i:04d}.{'log' if i % 2 == 0 else 'bin'}").write_bytes(data)


def change(root: Path, rng: random.Random) -> dict[str, int]:
    """Edit the source the way users do: overwrite blocks, insert bytes near the
    start of a file, append, add and delete files."""
    counts = dict(overwritten=0, inserted=0, appended=0, added=0, deleted=0)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for p in files:
        roll = rng.random()
        data = bytearray(p.read_bytes())
        if roll < 0.10 and len(data) > BLOCK:
            at = rng.randrange(len(data) - 100)
            data[at:at + 100] = rng.randbytes(100)
            counts["overwritten"] += 1
        elif roll < 0.15 and len(data) > 1000:
            data[500:500] = rng.randbytes(100)
            counts["inserted"] += 1
        elif roll < 0.20:
            data += rng.randbytes(3000)
            counts["appended"] += 1
        elif roll < 0.22:
            p.unlink()
            counts["deleted"] += 1
            continue
        else:
            continue
        p.write_bytes(data)
    for i in range(3):
        (root / f"new{i}.dat").write_bytes(rng.randbytes(50_000))
        counts["added"] += 1
    return counts


def profile(source: Path, target: Path) -> None:
    comp = dtcore.Compressor()
    totals = dict(files=0, same=0, changed=0, new=0, orphans=0, bytes=0, aligned=0, rolling=0,
                  chosen=0, compressed=0)
    t0 = time.perf_counter()
    for src in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = src.relative_to(source)
        tgt = target / rel
        totals["files"] += 1
        size = src.stat().st_size
        totals["bytes"] += size
        if not tgt.exists():
            totals["new"] += 1
            data = memoryview(src.read_bytes())  # read once, slice without copying
            sent = sum(len(p.body) for p in comp.compress_many(
                [data[i:i + BLOCK] for i in range(0, max(size, 1), BLOCK)], str(rel)))
            for k in ("aligned", "rolling", "chosen"):
                totals[k] += size
            totals["compressed"] += sent
            continue
        src_sums = dtcore.file_checksums(src, BLOCK)
        tgt_sums = dtcore.file_checksums(tgt, BLOCK)
        ranges = dtcore.differing_ranges(src_sums, tgt_sums)
        if len(ranges) == 0 and size == tgt.stat().st_size:
            totals["same"] += 1
            continue
        totals["changed"] += 1
        aligned = int(sum(min(b * BLOCK, size) - a * BLOCK for a, b in ranges)) + 8 * len(tgt_sums)
        d = dtcore.file_delta(dtcore.file_signature(tgt, BLOCK), src)
        rolling = d.wire_bytes + 16 * len(tgt_sums)
        rebuilt = dtcore.apply_delta(tgt.read_bytes(), d)
        assert rebuilt == src.read_bytes(), f"rebuild of {rel} does not match"
        totals["aligned"] += aligned
        totals["rolling"] += rolling
        totals["chosen"] += min(aligned, rolling)
        totals["compressed"] += len(comp.compress(d.literals, str(rel)).body) + 16 * len(d.instructions)
        if aligned > 2 * rolling:
            print(f"  {rel}: data shifted; rolling delta sends {rolling:,} B, aligned {aligned:,} B")
    for tgt in target.rglob("*"):
        if tgt.is_file() and not (source / tgt.relative_to(target)).exists():
            totals["orphans"] += 1
    elapsed = time.perf_counter() - t0
    print(f"\nDifference of {totals['files']} source files ({totals['bytes'] / 1e6:.1f} MB) "
          f"in {elapsed:.2f} s:")
    print(f"  unchanged {totals['same']}, changed {totals['changed']}, new {totals['new']}, "
          f"orphans on the target {totals['orphans']}")
    print(f"  bytes to send: aligned blocks {totals['aligned']:,}, rolling delta "
          f"{totals['rolling']:,}, cheaper per file {totals['chosen']:,}, "
          f"after lz4 {totals['compressed']:,} "
          f"({100 * totals['compressed'] / max(totals['bytes'], 1):.2f}% of the data)")


def merge_demo(rng: random.Random) -> None:
    ops = []
    for seq in range(50_000):
        f = rng.randrange(100)
        ops.append(Op(OpKind.WRITE, f, seq, b"db/table%02d" % f, rng.randrange(32768),
                      rng.randbytes(64)))
    batch = dtcore.pack_batch(ops)
    t = time.perf_counter()
    merged = dtcore.merge_batch(batch)
    dt = time.perf_counter() - t
    info = dtcore.scan_batch(merged)
    print(f"\nWrite merging: {len(ops):,} writes of 64 B to 100 files ({len(batch):,} B) became "
          f"{info.count:,} ops ({len(merged):,} B) in {dt * 1e3:.1f} ms "
          f"({len(ops) / dt / 1e6:.1f} M input ops/s)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", help="work here instead of a temporary folder (kept afterwards)")
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="dtcore-demo-"))
    source, target = work / "source", work / "target"
    try:
        print(f"Generating {args.files} files under {source} ...")
        generate(source, args.files, rng)
        shutil.copytree(source, target)
        counts = change(source, rng)
        print("Changed the source: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        profile(source, target)
        merge_demo(rng)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
