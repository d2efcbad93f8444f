"""Carrying out a mirror's plan for one file: the ops that make the target
copy match (the whole file, sparse files as their data extents; the blocks
whose checksums differ; a rolling delta; a symlink), gathered into frames of
about 1 MiB that go to the connection."""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Iterator

import numpy as np

from dtcore._native import _checksum, _smallfiles
from dtcore.model import xattrs
from dtcore.model.checksum import differing_blocks, runs
from dtcore.model.delta import Delta, Signature, file_delta
from dtcore.model.manifest import Entry, Listing
from dtcore.model.ops import LINK_ROOTED, Attrs, Op, OpKind, encode_patch, patch_size
from dtcore.protocol.messages import FileReply, SignatureReply, SignatureRequest
from dtcore.source.connection import Connection
from dtcore.source.mirror.options import MirrorOptions
from dtcore.source.mirror.plan import Rates

FRAME_BYTES = 1 << 20
_FRAME_OPS = 512
# new files up to this size are read and packed in bulk by C (small_files)
SMALL_WHOLE = 64 << 10
WINDOW = 16  # checksum requests in flight per file


class FrameBatch:
    """Ops of one or more files gathered into frames of about 1 MiB.  A file
    named by :meth:`file_done` counts as done (``on_done``) once the target
    has acknowledged the frame that carries its last op."""

    def __init__(self, conn: Connection, on_done: Callable[[bytes], None],
                 on_sent: Callable[[int, int, int], None]) -> None:
        self.conn = conn
        self.on_done = on_done
        self.on_sent = on_sent  # (ops, data bytes, wire bytes) of each frame
        self.ops: list[Op] = []
        self.nbytes = 0
        self.data_bytes = 0
        self.done: list[bytes] = []
        self.claims: list[bytes] = []

    def add(self, op: Op) -> None:
        # flush before adding, so a file_done() that follows always rides
        # with its file's last op
        if self.nbytes >= FRAME_BYTES or len(self.ops) >= _FRAME_OPS:
            self.flush()
        self.ops.append(op)
        self.data_bytes += len(op.data)
        self.nbytes += len(op.data) + len(op.path)

    def file_done(self, path: bytes) -> None:
        self.done.append(path)

    def release_after(self, path: bytes) -> None:
        """End the claim on ``path`` once the frame carrying its last op is
        sent, without counting it done (a folder's times)."""
        self.claims.append(path)

    def flush(self) -> None:
        if not self.ops:
            for p in self.done:
                self.conn.tx.release(p)
                self.on_done(p)
            for p in self.claims:
                self.conn.tx.release(p)
            self.done, self.claims = [], []
            return
        ops, done, data_bytes = self.ops, self.done, self.data_bytes
        release = tuple(done + self.claims)
        self.ops, self.done, self.claims, self.nbytes, self.data_bytes = [], [], [], 0, 0
        sent = self.conn.send_ops(
            ops, mirror=True, path=ops[0].path if len(ops) < 64 else None,
            on_applied=(lambda: [self.on_done(p) for p in done]) if done else None,
            release=release)
        self.on_sent(len(ops), data_bytes, sent)


class Sender:
    """Turns the transfer chosen for a file into ops on a batch."""

    def __init__(self, conn: Connection, root: bytes, opts: MirrorOptions, rates: Rates) -> None:
        self.conn = conn
        self.root = root
        self.opts = opts
        self.rates = rates
        self._seq = 0
        self._lock = threading.Lock()

    def next_op(self) -> tuple[int, int]:
        """(file id, seq) of the next op; mirror ops carry no file identity."""
        with self._lock:
            self._seq += 1
            return 0, self._seq

    def path(self, e: Entry) -> bytes:
        return os.path.join(self.root, e.path)

    def whole(self, batch: FrameBatch, e: Entry, fd: int) -> None:
        batch.add(Op(OpKind.CREATE, *self.next_op(), e.path, 0o600))
        size = os.fstat(fd).st_size
        spans = extents(fd, size, self.opts.sparse)
        for start, end in spans:
            self.send_range(batch, e.path, fd, start, end)
        if not spans or spans[-1][1] < size:  # a trailing hole
            batch.add(Op(OpKind.TRUNCATE, *self.next_op(), e.path, size))

    def send_range(self, batch: FrameBatch, path: bytes, fd: int, start: int, end: int) -> None:
        chunk = self.opts.block
        pos = start
        while pos < end:
            n = min(FRAME_BYTES, end - pos)
            data = self.read(fd, n, pos)
            if not data:
                break
            view = memoryview(data)
            for off in range(0, len(data), chunk):
                batch.add(Op(OpKind.WRITE, *self.next_op(), path, pos + off, view[off:off + chunk]))
            pos += len(data)

    def small_files(self, listing: Listing, picked: np.ndarray
                    ) -> Iterator[tuple[memoryview, int, int, np.ndarray]]:
        """Whole transfers of the small regular files at ``picked`` (indices of
        ``listing``) without a Python step per file: yields per frame (the
        packed batch, valid until the next frame, its op count, the bytes of
        its ops' data, the indices packed).  A file left out, such as one no
        longer small or regular, is for the general path.  Each file is
        CREATE, WRITEs, SETATTR, the same ops :meth:`whole` and
        :meth:`attributes` make."""
        per = _FRAME_OPS // 3
        status = np.empty(per, dtype=np.uint8)
        out = bytearray(FRAME_BYTES + 2 * SMALL_WHOLE)  # one buffer: a frame is copied when queued
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            pos = 0
            while pos < len(picked):
                chunk = picked[pos:pos + per]
                with self._lock:  # the ops take consecutive numbers
                    looked, used, ops, data = _smallfiles.pack(
                        fd, listing.data, np.ascontiguousarray(listing.offsets[chunk]),
                        SMALL_WHOLE, self.opts.block, self.opts.sparse, self._seq + 1, out, status)
                    self._seq += ops
                packed = chunk[:looked][status[:looked] == _smallfiles.PACKED]
                yield memoryview(out)[:used], ops, data, packed
                pos += looked
        finally:
            os.close(fd)

    def blocks(self, batch: FrameBatch, e: Entry, fd: int) -> bool:
        """Send the blocks whose checksums differ (and the new size); returns
        whether anything had to change."""
        block = self.opts.block
        size = os.fstat(fd).st_size
        changed = False
        target_size = -1
        for first, differs, target_size in self.block_differences(e.path, fd, size, block):
            for lo, hi in runs(differs).tolist():
                self.send_range(batch, e.path, fd, (first + lo) * block,
                                min((first + hi) * block, size))
                changed = True
        if target_size != size:
            batch.add(Op(OpKind.TRUNCATE, *self.next_op(), e.path, size))
            changed = True
        return changed

    def block_differences(self, path: bytes, fd: int, size: int, block: int,
                          per: int = 0) -> Iterator[tuple[int, np.ndarray, int]]:
        """Per checksum request of ``per`` blocks (default MaxChecksumBlocks),
        in order: (its first block, which of its blocks differ from the
        target copy's, that copy's size)."""
        per = per or self.opts.max_checksum_blocks
        for first, reply, theirs in self.target_sums(path, size, block, per):
            offset = first * block
            t0 = time.perf_counter()
            ours = self.source_sums(fd, offset, min(block * per, size - offset), block)
            self.rates.hashed(len(ours) * block, time.perf_counter() - t0)
            yield first, differing_blocks(ours, theirs), reply.size

    def rolling(self, batch: FrameBatch, e: Entry) -> bool:
        """Send a rolling delta; False when it would be too large for a frame."""
        fields, data = self.target_signature(e.path, self.opts.block)
        reply = SignatureReply.parse(fields)
        n = reply.blocks
        if reply.size <= 0 or len(data) != 16 * n:
            return False
        arrays = np.frombuffer(data, dtype=np.uint64)
        sig = Signature(self.opts.block, reply.size, arrays[:n].copy(), arrays[n:].copy())
        t0 = time.perf_counter()
        d = self.delta(sig, self.path(e))
        self.rates.hashed(e.size, time.perf_counter() - t0)
        link = self.conn.link
        if link is None or patch_size(d.instructions, d.literals) > link.ch.max_frame // 2:
            return False
        if d.source_size > reply.size + len(d.literals):
            return False  # the target takes no patch that builds more than copy plus literals
        patch = encode_patch(d.instructions, d.source_hash, d.literals)
        batch.add(Op(OpKind.PATCH, *self.next_op(), e.path, d.source_size, patch))
        return True

    # -- the reads, hashes and questions a transfer is made of (a profile times them)
    def read(self, fd: int, n: int, pos: int) -> bytes:
        return os.pread(fd, n, pos)

    def target_sums(self, path: bytes, size: int, block: int,
                    per: int) -> Iterator[tuple[int, FileReply, np.ndarray]]:
        return self.conn.block_sums(path, size, block, per, WINDOW)

    def source_sums(self, fd: int, offset: int, length: int, block: int) -> np.ndarray:
        return source_sums(fd, offset, length, block)

    def target_signature(self, path: bytes, block: int) -> tuple[dict[str, Any], memoryview]:
        return self.conn.call(SignatureRequest(path, block))

    def delta(self, sig: Signature, path: bytes) -> Delta:
        return file_delta(sig, path)

    def attributes(self, batch: FrameBatch, e: Entry) -> None:
        self.xattrs(batch, e)
        batch.add(Op(OpKind.SETATTR, *self.next_op(), e.path, 0, e.attrs()))

    def xattrs(self, batch: FrameBatch, e: Entry, only_if_any: bool = False) -> None:
        """With ExtendedAttributes, the entry's whole set (an empty one clears
        the target's, unless ``only_if_any``)."""
        if not self.opts.xattrs:
            return
        try:
            attrs = xattrs.read(self.path(e))
        except OSError:
            return  # gone since the listing: the next mirror or the replication says so
        if attrs or not only_if_any:
            batch.add(Op(OpKind.XATTR, *self.next_op(), e.path, 0, xattrs.pack(attrs)))

    def symlink(self, batch: FrameBatch, e: Entry) -> None:
        """The link (an absolute one inside the set re-rooted, with RemapLink)
        and its times."""
        text = os.readlink(self.path(e))
        flags = 0
        root = self.root.rstrip(b"/") + b"/"
        if self.opts.remap_link and text.startswith(root) and len(text) > len(root):
            text, flags = text[len(root):], LINK_ROOTED
        batch.add(Op(OpKind.SYMLINK, *self.next_op(), e.path, flags, text))
        self.xattrs(batch, e, only_if_any=True)
        batch.add(Op(OpKind.SETATTR, *self.next_op(), e.path, 0,
                     Attrs(Attrs.TIMES, 0, 0, 0, e.atime_ns, e.mtime_ns).pack()))


def source_sums(fd: int, offset: int, length: int, block: int) -> np.ndarray:
    """The source's own checksums of one range (none past the end)."""
    if length <= 0:
        return np.zeros(0, np.uint64)
    return _checksum.fd_checksums(fd, offset, length, block, "source file")


def extents(fd: int, size: int, sparse: bool) -> list[tuple[int, int]]:
    """Data extents of a file: all of it, or with sparse mirroring only the
    parts that are not holes."""
    if not sparse or size == 0 or os.fstat(fd).st_blocks * 512 >= size:
        return [(0, size)]
    out = []
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            break  # only a hole is left
        end = os.lseek(fd, start, os.SEEK_HOLE)
        out.append((start, min(end, size)))
        pos = end
    return out
