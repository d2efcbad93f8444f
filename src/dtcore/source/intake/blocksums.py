"""One watched file's last known block checksums, and the writes that bring
the target copy from them to the file as it is now.

Blocks are 4 KiB up to 1 GiB (8 bytes of checksum per 4 KiB: a random page
write costs one or two blocks on the wire, where ``MirrorChunkSize`` blocks
would cost 64 KiB), doubling beyond so that no file holds more than 2**18
checksums (2 MiB)."""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from dtcore._native import _checksum
from dtcore.model.checksum import differing_ranges

BLOCK = 4096
_MAX_BLOCKS = 1 << 18
_PIECE = 1 << 20  # bytes read (and reported) at a time
_GIVE_UP = 100    # tries to open a file that events say is gone before waiting for them


class FileSums:
    """Checksums and change marks of one file (``obj``: its watcher handle)."""

    __slots__ = ("obj", "block", "checks", "size", "known", "dirty", "first", "last", "closed",
                 "not_before", "misses", "passed", "cost")

    def __init__(self, obj: Any, *, known_empty: bool = False) -> None:
        self.obj = obj
        self.block = BLOCK if known_empty else 0
        self.checks = np.zeros(0, np.uint64)
        self.size = 0
        self.known = known_empty  # False: compare with the target's checksums first
        self.dirty = False
        self.first = self.last = self.not_before = 0.0
        self.closed = False
        self.misses = 0
        self.passed = self.cost = 0.0  # when the last rehash ended, and what it took

    def changed(self, now: float, closed: bool) -> None:
        if not self.dirty:
            self.dirty, self.first = True, now
        self.last = now
        self.closed = self.closed or closed

    def due(self, now: float, wait: float) -> bool:
        """Whether to compare the file now (``wait`` 0: a flush, at once).
        Once writes paused for ``wait`` or the file was closed, after twice
        the last rehash time; while writes go on, after ``4 * wait`` and
        eight times the last rehash time, so that a large file written
        without pause costs at most about an eighth of a core."""
        if not self.dirty:
            return False
        if wait == 0:
            return True
        if now < self.not_before:
            return False
        since = now - self.passed
        if self.closed or now - self.last >= wait:
            return since >= 2 * self.cost
        return now - self.first >= 4 * wait and since >= 8 * self.cost

    def later(self, now: float, delay: float) -> None:
        self.not_before = now + delay

    def missed(self, now: float) -> None:
        """The file could not be opened under its name; events will say why."""
        self.misses += 1
        if self.misses >= _GIVE_UP:
            self.dirty, self.misses = False, 0
        else:
            self.later(now, 0.05)

    def forget(self) -> None:
        """The target copy changed by other means (a remirror)."""
        self.known = False

    def block_for(self, size: int) -> int:
        if not self.block:
            block = BLOCK
            while size > block * _MAX_BLOCKS and block < (1 << 20):
                block <<= 1
            self.block = block
        return self.block

    def learn(self, found: tuple[int, int, np.ndarray]) -> None:
        """Take the target copy's (block, size or -1 when it has none, sums)."""
        self.block, self.size, self.checks = found
        self.known = True

    def diff(self, fd: int, size: int, now: float) -> list[tuple[Any, ...]]:
        """The ops ("truncate", size) and ("write", offset, data) that bring
        the last known copy to the file's ``size`` bytes now; the checksums
        kept are those of the bytes reported."""
        self.dirty = self.closed = False
        self.misses = 0
        block = self.block_for(size)
        t0 = time.perf_counter()
        new = _checksum.fd_checksums(fd, 0, size, block, "watched file") if size else \
            np.zeros(0, np.uint64)
        self.cost = time.perf_counter() - t0
        self.passed = now + self.cost
        ops: list[tuple[Any, ...]] = []
        if self.size < 0 or size < self.size:
            ops.append(("truncate", size))
        old = max(self.size, 0)
        # a sparse file's new holes stay holes: past the old end only its data
        # goes, and the final size makes the rest (as in the mirror)
        sparse = size > old and os.fstat(fd).st_blocks * 512 < size
        spans: list[tuple[int, int]] = []
        for lo, hi in differing_ranges(new, self.checks).tolist():
            start, end = lo * block, min(hi * block, size)
            edge = -(-old // block) * block  # the first whole block past the old end
            if sparse and end > edge:
                if start < edge:
                    spans.append((start, edge))
                spans += _data(fd, max(start, edge), end, block)
            else:
                spans.append((start, end))
        # the old last block, when it was partial: an append leaves its old
        # bytes as they were, and then only what follows them goes
        tail = old // block if old % block and size > old else -1
        for off, end in spans:
            while off < end:
                data = os.pread(fd, min(_PIECE, end - off), off)
                if not data:
                    break
                keep = old - off if off == tail * block else 0
                if keep and _checksum.xxh3_64(memoryview(data)[:keep]) == int(self.checks[tail]):
                    ops.append(("write", old, memoryview(data)[keep:]))
                else:
                    ops.append(("write", off, data))
                first = off // block
                sums = _checksum.block_checksums(data, block)
                new[first:first + len(sums)] = sums
                off += len(data)
        if sparse:
            ops.append(("truncate", size))
        self.checks, self.size = new, size
        return ops


def _data(fd: int, start: int, end: int, block: int) -> list[tuple[int, int]]:
    """The parts of [start, end) that are not holes, widened to whole blocks."""
    out = []
    pos = start
    while pos < end:
        try:
            lo = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # only a hole is left
            break
        if lo >= end:
            break
        hi = min(os.lseek(fd, lo, os.SEEK_HOLE), end)
        lo = lo // block * block
        hi = min(-(-hi // block) * block, end)
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((max(lo, start), hi))
        pos = hi
    return out
