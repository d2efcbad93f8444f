"""Block checksums against a plain read() pass and a plain C sum pass."""
import os
import threading

import numpy as np

import dtcore
from dtcore._native import _checksum

from .common import MiB, paired, random_bytes, temp_file

FILE_SIZE = 256 * MiB
BUF_SIZE = 64 * MiB


def read_reference(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        _checksum.ref_read(fd, os.fstat(fd).st_size, MiB)
    finally:
        os.close(fd)


def in_threads(fn, args) -> None:
    threads = [threading.Thread(target=fn, args=(a,)) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class FileChecksum:
    """Checksum MB/s of a file warm in the page cache vs read() of it."""

    timeout = 300

    def setup(self):
        data = random_bytes(FILE_SIZE)
        self.paths = [temp_file(data), temp_file(data)]
        for p in self.paths:  # warm the page cache
            read_reference(p)

    def teardown(self):
        for p in self.paths:
            os.unlink(p)

    def time_checksum_file(self):
        dtcore.file_checksums(self.paths[0])

    def time_read_reference(self):
        read_reference(self.paths[0])

    def track_ratio_vs_read(self):
        return paired(lambda: dtcore.file_checksums(self.paths[0]),
                      lambda: read_reference(self.paths[0]), repeats=9)["ratio"]

    track_ratio_vs_read.unit = "x read()"

    def track_two_thread_speedup(self):
        return paired(lambda: in_threads(dtcore.file_checksums, self.paths),
                      lambda: dtcore.file_checksums(self.paths[0]), repeats=9)["ratio"] * 2

    track_two_thread_speedup.unit = "x one thread"


class BufferChecksum:
    """Checksum of an in-memory buffer vs a C pass summing 64-bit words."""

    def setup(self):
        self.buf = np.frombuffer(random_bytes(BUF_SIZE), dtype=np.uint8)
        self.halves = [self.buf[:BUF_SIZE // 2], self.buf[BUF_SIZE // 2:]]

    def time_checksum_buffer(self):
        dtcore.block_checksums(self.buf)

    def time_sum64_reference(self):
        _checksum.ref_sum64(self.buf)

    def track_ratio_vs_sum64(self):
        return paired(lambda: dtcore.block_checksums(self.buf),
                      lambda: _checksum.ref_sum64(self.buf))["ratio"]

    track_ratio_vs_sum64.unit = "x sum64"
