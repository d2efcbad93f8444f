"""Compressor.compress_many vs lz4.block.compress on the same 64 KiB blocks."""
import lz4.block

from dtcore import Compressor

from .common import MiB, log_like, paired, random_bytes, zeros

KINDS = {"log": log_like, "random": random_bytes, "zero": zeros}
BLOCK = 65536


class Compression:
    params = list(KINDS)
    param_names = ["data"]

    def setup(self, kind):
        data = KINDS[kind](16 * MiB)
        self.blocks = [data[i:i + BLOCK] for i in range(0, len(data), BLOCK)]
        self.c = Compressor()

    def ours(self):
        self.c.compress_many(self.blocks)

    def raw_lz4(self):
        compress = lz4.block.compress
        for b in self.blocks:
            compress(b, store_size=False)

    def time_compress(self, kind):
        self.ours()

    def time_lz4_reference(self, kind):
        self.raw_lz4()

    def track_ratio_vs_lz4(self, kind):
        return paired(self.ours, self.raw_lz4)["ratio"]

    track_ratio_vs_lz4.unit = "x lz4.block"
