"""Rolling delta on a 256 MiB file with 100 bytes inserted near the start,
next to the aligned block compare, and the bytes each would send."""
import dtcore

from .common import MiB, random_bytes

SIZE = 256 * MiB


class Delta:
    timeout = 600

    def setup(self):
        self.target = random_bytes(SIZE)
        self.source = self.target[:4096] + random_bytes(100, seed=9) + self.target[4096:]
        self.sig = dtcore.signature(self.target)

    def time_signature(self):
        dtcore.signature(self.target)

    def time_rolling_delta(self):
        dtcore.delta(self.sig, self.source)

    def time_aligned_compare(self):
        dtcore.differing_ranges(dtcore.block_checksums(self.source), self.sig.strong)

    def track_rolling_bytes_sent(self):
        return dtcore.delta(self.sig, self.source).wire_bytes

    track_rolling_bytes_sent.unit = "bytes"

    def track_aligned_bytes_sent(self):
        ranges = dtcore.differing_ranges(dtcore.block_checksums(self.source), self.sig.strong)
        blocks = int((ranges[:, 1] - ranges[:, 0]).sum())
        return min(blocks * 65536, len(self.source)) + 16 * len(ranges)

    track_aligned_bytes_sent.unit = "bytes"
