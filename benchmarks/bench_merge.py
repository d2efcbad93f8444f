"""Write merging through the batch API vs memcpy and a plain-Python merge."""
import random

import numpy as np

from dtcore._twin.merge import merge_ops
from dtcore.model.ops import Op, OpKind, merge_batch, merge_bound, pack_batch

from .common import MiB, paired, random_bytes

SEQ_BYTES = 32 * MiB


def sequential_ops():
    data = random_bytes(SEQ_BYTES)
    return [Op(OpKind.WRITE, 1, i, b"data/big.bin", i * 4096, data[i * 4096:(i + 1) * 4096])
            for i in range(SEQ_BYTES // 4096)]


def random_ops(n=200_000, files=300, seed=5):
    rng = random.Random(seed)
    return [Op(OpKind.WRITE, f, i, b"db/table%03d.dat" % f, rng.randrange(16384), rng.randbytes(64))
            for i, f in enumerate(rng.randrange(files) for _ in range(n))]


class MergeSequential:
    """4 KiB sequential writes: payload MB/s vs a plain copy of the bytes."""

    def setup(self):
        self.ops = sequential_ops()
        self.batch = pack_batch(self.ops)
        self.out = bytearray(merge_bound(self.batch))
        self.src = np.frombuffer(random_bytes(SEQ_BYTES), dtype=np.uint8)
        self.dst = np.empty_like(self.src)

    def merge(self):
        merge_batch(self.batch, into=self.out)

    def time_merge(self):
        self.merge()

    def time_memcpy_reference(self):
        np.copyto(self.dst, self.src)

    def track_ratio_vs_memcpy(self):
        return paired(self.merge, lambda: np.copyto(self.dst, self.src))["ratio"]

    track_ratio_vs_memcpy.unit = "x memcpy"

    def track_ratio_vs_python(self):
        return paired(lambda: merge_batch(self.batch),
                      lambda: merge_ops(self.ops, 65536), repeats=3)["ratio"]

    track_ratio_vs_python.unit = "x python"


class MergeRandom:
    """64-byte random overlapping writes to 300 files: input ops/s."""

    def setup(self):
        self.ops = random_ops()
        self.batch = pack_batch(self.ops)
        self.out = bytearray(merge_bound(self.batch))

    def merge(self):
        merge_batch(self.batch, into=self.out)

    def time_merge(self):
        self.merge()

    def track_million_ops_per_s(self):
        from .common import best_of
        return len(self.ops) / best_of(self.merge, 7) / 1e6

    track_million_ops_per_s.unit = "Mops/s"

    def track_ratio_vs_python(self):
        ops = self.ops[:20_000]
        batch = pack_batch(ops)
        return paired(lambda: merge_batch(batch), lambda: merge_ops(ops, 65536),
                      repeats=3)["ratio"]

    track_ratio_vs_python.unit = "x python"
