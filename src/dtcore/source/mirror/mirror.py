"""Mirrors: make the target path hold what the replication set holds.

The source asks the target for its manifest (in parts when large; with checksums,
the target hashes its small files while listing), lists and hashes its own
set meanwhile, and compares the two in bulk: entries that are the same on
both sides are accounted at once, and only the rest go through a bounded file
queue (``FileQueueSize``) to worker threads.  Per file a worker chooses:

* skip: the target copy is the same (attributes, or checksums), or
  ``MirrorOverwrite``/``MirrorZeroKFiles`` say to leave it;
* whole: send the file (sparse files as their data extents only);
* block: compare block checksums fetched ``MaxChecksumBlocks`` at a time
  with the source's own, computed in parallel, and send differing blocks;
* rolling: fetch the target copy's signature and send a rolling delta,
  when data has shifted.

The choice weighs the measured hashing and network speeds: hashing both
copies only pays when it is cheaper than sending the bytes.  Every file is
marked done when the target acknowledges its last op, so a mirror cut by a
lost connection resumes after reconnecting: finished files are not sent
again and a file cut mid-way is compared block by block, so only its
missing part travels.  Verify runs the same comparison and reports."""
from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from dtcore._native import _checksum
from dtcore.control.config import Config
from dtcore.control.events import emit
from dtcore.control.stats import PERCENT_SCALE
from dtcore.errors import FileAccessError
from dtcore.model.checksum import differing_ranges
from dtcore.model.delta import Signature, file_delta
from dtcore.model.manifest import (
    FILE,
    HASHED,
    KIND_DIR,
    KIND_FILE,
    KIND_LINK,
    LINK,
    NEWER,
    SAME_HASH,
    SAME_KIND,
    SAME_MODE,
    SAME_MTIME,
    SAME_SIZE,
    THERE,
    Entry,
    Listing,
)
from dtcore.model.ops import LINK_ROOTED, Attrs, Op, OpKind, encode_patch, patch_size
from dtcore.model.repset import ReplicationSet
from dtcore.source.connection import Connection
from dtcore.source.verifylog import VerifyLog

FULL, DIFFERENCE = "full", "difference"
WHOLE, BLOCK, ROLLING, SKIPPED, ATTRIBUTES = "whole", "block", "rolling", "skipped", "attributes"
# mirror status words
CALCULATING, IN_PROGRESS, WAITING, IDLE, REMOVING_ORPHANS, VERIFYING, STOPPED = (
    "Calculating", "In Progress", "Waiting", "Idle", "Removing Orphans", "Verifying", "Stopped")
_FRAME_BYTES = 1 << 20
_FRAME_OPS = 512
_WINDOW = 16  # checksum requests in flight per file


@dataclass
class MirrorOptions:
    """What one mirror does; defaults come from the settings."""

    mode: str = DIFFERENCE
    checksum: bool = True
    orphans: bool = False
    verify: bool = False
    remirror: bool = False
    workers: int = 2
    overwrite: int = 1
    zero_k_files: bool = True
    small_file: int = 65536
    sparse: bool = True
    remap_link: bool = True
    block: int = 65536
    max_checksum_blocks: int = 32
    file_queue: int = 16
    remove_all_orphans: bool = True
    orphan_minutes: int = 60
    move_orphans: bool = False
    orphan_batch: int = 1000

    @classmethod
    def from_config(cls, config: Config, **overrides: Any) -> "MirrorOptions":
        c = config
        opts = cls(checksum=bool(c["ChecksumAll"]), overwrite=c["MirrorOverwrite"],
                   zero_k_files=bool(c["MirrorZeroKFiles"]), small_file=c["SmallFileThreshold"],
                   sparse=bool(c["EnableSparseFileMirroring"]), remap_link=bool(c["RemapLink"]),
                   block=c["MirrorChunkSize"], max_checksum_blocks=c["MaxChecksumBlocks"],
                   file_queue=c["FileQueueSize"], remove_all_orphans=bool(c["RemoveAllOrphans"]),
                   orphan_minutes=c["RemoveOrphansTime"], move_orphans=bool(c["MoveOrphanedFiles"]),
                   orphan_batch=max(1, c["MaxRemoveOrphansOpSize"]))
        for k, v in overrides.items():
            if v is not None:
                setattr(opts, k, v)
        return opts


@dataclass
class MirrorResult:
    """What a mirror (or verify) did."""

    files: int = 0
    directories: int = 0
    bytes_total: int = 0
    bytes_sent: int = 0
    bytes_skipped: int = 0
    wire_bytes: int = 0
    strategies: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        (WHOLE, BLOCK, ROLLING, ATTRIBUTES, SKIPPED), 0))
    hard_links: int = 0
    orphans: dict[str, int] = field(default_factory=lambda: {"files": 0, "directories": 0, "bytes": 0})
    differences: list[tuple[str, str]] = field(default_factory=list)
    resumed: int = 0
    seconds: float = 0.0


class _Rates:
    """Measured hashing and network speeds (bytes/s), smoothed."""

    def __init__(self) -> None:
        self.hash = 3e9
        self.net = 3e8
        self._lock = threading.Lock()

    def hashed(self, nbytes: int, seconds: float) -> None:
        if nbytes > 1 << 20 and seconds > 0:
            with self._lock:
                self.hash = 0.7 * self.hash + 0.3 * nbytes / seconds

    def sent(self, nbytes: int, seconds: float) -> None:
        if nbytes > 1 << 20 and seconds > 0:
            with self._lock:
                self.net = 0.7 * self.net + 0.3 * nbytes / seconds


class _Batch:
    """Ops of one or more files gathered into frames of about 1 MiB."""

    def __init__(self, mirror: "Mirror") -> None:
        self.m = mirror
        self.ops: list[Op] = []
        self.nbytes = 0
        self.data_bytes = 0
        self.done: list[bytes] = []
        self.path: bytes | None = None

    def add(self, op: Op) -> None:
        # flush before adding, so a file_done() that follows always rides
        # with its file's last op
        if self.nbytes >= _FRAME_BYTES or len(self.ops) >= _FRAME_OPS:
            self.flush()
        self.ops.append(op)
        self.data_bytes += len(op.data)
        self.nbytes += len(op.data) + len(op.path)

    def file_done(self, path: bytes) -> None:
        self.done.append(path)

    def flush(self) -> None:
        if not self.ops:
            for p in self.done:
                self.m._mark_done(p)
            self.done = []
            return
        ops, done, data_bytes = self.ops, self.done, self.data_bytes
        self.ops, self.done, self.nbytes, self.data_bytes = [], [], 0, 0
        started = time.perf_counter()
        sent = self.m.conn.send_ops(
            ops, mirror=True, path=ops[0].path if len(ops) < 64 else None,
            on_applied=(lambda: [self.m._mark_done(p) for p in done]) if done else None)
        self.m._generated(len(ops), data_bytes, sent)
        self.m.rates.sent(sent, time.perf_counter() - started)


class Mirror:
    """One mirror (or verify) of a replication set over a connection."""

    def __init__(self, conn: Connection, repset: ReplicationSet, options: MirrorOptions, *,
                 progress: Callable[["Mirror"], None] | None = None,
                 verify_log: VerifyLog | None = None) -> None:
        self.conn = conn
        self.repset = repset
        self.opts = options
        self.progress = progress
        self.verify_log = verify_log
        self.status = IDLE
        self.result = MirrorResult()
        self.rates = _Rates()
        self.done: set[bytes] = set()
        self.started: set[bytes] = set()
        self._lock = threading.Lock()
        self._remaining = 0
        self._total = 0
        self._seq = 0
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._sources: dict[tuple[int, int], bytes] = {}

    # -- bookkeeping -----------------------------------------------------------
    def _mark_done(self, path: bytes) -> None:
        with self._lock:
            self.done.add(path)

    def _generated(self, ops: int, nbytes: int, wire: int) -> None:
        srv = self.conn.stats.server
        srv.add("MirOpsGenerated", ops)
        srv.add("MirBytesGenerated", nbytes)
        with self._lock:
            self.result.bytes_sent += nbytes
            self.result.wire_bytes += wire

    def _account(self, entry: Entry, strategy: str, skipped: int = 0) -> None:
        with self._lock:
            self.result.strategies[strategy] += 1
            self._remaining -= entry.size
            self.result.bytes_skipped += skipped
        self._progressed(skipped)

    def _progressed(self, skipped: int) -> None:
        """Counters and progress after entries were accounted."""
        c = self.conn.counters
        remaining = max(self._remaining, 0)
        c["conMirrorBytesRemaining"] = remaining
        if skipped:
            c.add("conBytesSkipped", skipped)
        if self._total:
            c["conMirrorPercent"] = (self._total - remaining) * 100 * PERCENT_SCALE // self._total
        if self.progress is not None:
            self.progress(self)

    @property
    def percent(self) -> float:
        if not self._total:
            return 100.0 if self.status in (IDLE, WAITING) else 0.0
        return 100.0 * (self._total - max(self._remaining, 0)) / self._total

    @property
    def bytes_remaining(self) -> int:
        return max(self._remaining, 0)

    def _next_op(self) -> tuple[int, int]:
        with self._lock:
            self._seq += 1
            return 0, self._seq  # mirror ops carry no file identity

    def _set_status(self, status: str) -> None:
        self.status = status
        if self.progress is not None:
            self.progress(self)

    def stop(self) -> None:
        """Ask the running mirror to stop after the files in hand."""
        self._stop.set()

    # -- the whole mirror --------------------------------------------------------
    def run(self, resume: bool = False) -> MirrorResult:
        """Run the mirror.  With ``resume``, files already acknowledged are
        skipped and files that were under way are compared block by block."""
        opts, conn = self.opts, self.conn
        verify_only = opts.verify and not opts.remirror
        start = time.monotonic()
        label = conn.label()
        self._set_status(CALCULATING)
        need_manifest = opts.mode == DIFFERENCE or opts.orphans or opts.overwrite != 1 or \
            opts.verify or resume
        # ask first: the target lists (and hashes) its copy while we list ours
        pending = conn.request("manifest", hash_below=opts.small_file if opts.checksum else 0) \
            if need_manifest else None
        ours = self.repset.listing(opts.small_file if opts.checksum and pending is not None else 0)
        kinds, sizes = ours.columns()
        is_dir, is_file, is_link = kinds == KIND_DIR, kinds == KIND_FILE, kinds == KIND_LINK
        todo = np.ones(len(ours), dtype=bool)
        if self.done:  # resuming: what the target acknowledged stays as it is
            todo = ~ours.among(self.done)
        self._total = self._remaining = int(sizes[todo].sum())
        self.result.files = int((todo & ~is_dir).sum())
        self.result.directories = int((todo & is_dir).sum())
        self.result.bytes_total = self._total
        if resume:
            self.result.resumed += 1
        c = conn.counters
        c["conMirrorBytesRemaining"] = self._total
        c["conMirrorPercent"] = 0
        c["ConMirrorStartTime"] = int(time.time())
        c["ConMirrorEndTime"] = 0
        emit(4058 if opts.verify else 4019, conn=label)
        theirs = Listing.parse(conn.manifest(pending) if pending is not None else b"")
        flags, match = ours.compare(theirs)
        if not verify_only:
            conn.call("state", set="Mirroring")
        self._set_status(VERIFYING if opts.verify else IN_PROGRESS)
        there = (flags & (THERE | SAME_KIND)) == (THERE | SAME_KIND)
        batch = _Batch(self)
        if not verify_only:
            for i in np.flatnonzero(todo & is_dir & ~there).tolist():
                e = ours.entry(i)
                batch.add(Op(OpKind.MKDIR, *self._next_op(), e.path, e.mode))
            batch.flush()
        skip = todo & self._unchanged(flags, there, is_file, is_link, sizes, verify_only)
        if self.started:  # files cut short by a lost connection are compared again
            skip &= ~ours.among(self.started)
        self._account_many(int(skip.sum()), int(sizes[skip].sum()))
        work: queue.Queue[tuple[Entry, Entry | None] | None] = queue.Queue(max(1, opts.file_queue))
        workers = [threading.Thread(target=self._worker, args=(work, resume),
                                    name=f"dtcore-mirror-{i}", daemon=True)
                   for i in range(max(1, opts.workers))]
        for t in workers:
            t.start()
        links: list[tuple[Entry, Entry | None]] = []
        try:
            assert ours.ids is not None
            twin = is_file & (ours.ids[:, 2] > 1)  # hard-linked: even skipped ones name a first
            for i in np.flatnonzero(todo & ~is_dir & (~skip | twin)).tolist():
                if self._stop.is_set() or self._error is not None:
                    break
                e = ours.entry(i)
                t = theirs.entry(int(match[i])) if match[i] >= 0 else None
                if twin[i]:
                    # hard links: the first name is sent, the others link to it
                    first = self._sources.setdefault((e.dev, e.ino), e.path)
                    if skip[i]:
                        continue
                    if first != e.path:
                        links.append((e, t))
                        continue
                while not self._put(work, (e, t)):
                    if self._error is not None:
                        break
        finally:
            for _ in workers:
                work.put(None)
            for t in workers:
                t.join()
        if self._error is not None:
            raise self._error
        matched = np.zeros(len(theirs), dtype=bool)
        matched[match[match >= 0]] = True
        if not verify_only:
            touched = self.result.bytes_sent > 0 or any(self.result.strategies[k] for k in (
                WHOLE, BLOCK, ROLLING, ATTRIBUTES))
            attrs_differ = (flags & (SAME_MTIME | SAME_MODE)) != (SAME_MTIME | SAME_MODE)
            dirs = todo & is_dir & (~there | attrs_differ | touched)
            self._finish(batch, [ours.entry(i) for i in np.flatnonzero(dirs)[::-1].tolist()], links)
        if opts.orphans and not verify_only:
            self._orphans([theirs.entry(j) for j in np.flatnonzero(~matched).tolist()])
        elif opts.verify:
            for path in sorted(theirs.path(j) for j in np.flatnonzero(~matched).tolist()):
                self._difference(path, "on the target only")
        if self._stop.is_set():
            emit(4061 if opts.verify else 4022, conn=label, detail="stopped by request")
            self.status = STOPPED
        else:
            if not verify_only:
                conn.call("state", set="OK", reason="mirror complete")
            c["ConMirrorEndTime"] = int(time.time())
            c["conMirrorPercent"] = 100 * PERCENT_SCALE
            c["conMirrorBytesRemaining"] = 0
            emit(4062 if opts.verify else 4023, conn=label,
                 detail=f"{self.result.files} files, {self.result.bytes_sent} bytes sent")
            self._set_status(IDLE)
        self.result.seconds = time.monotonic() - start
        return self.result

    def _unchanged(self, flags: np.ndarray, there: np.ndarray, is_file: np.ndarray,
                   is_link: np.ndarray, sizes: np.ndarray, verify_only: bool) -> np.ndarray:
        """Entries left as they are without a look at their content: the
        bulk of a mirror of a set that barely changed, decided at once."""
        opts = self.opts
        same = there & ((flags & (SAME_SIZE | SAME_MTIME | SAME_MODE)) == (SAME_SIZE | SAME_MTIME | SAME_MODE))
        keep = np.zeros(len(flags), dtype=bool)
        if not verify_only and opts.overwrite == 0:
            keep |= there
        elif not verify_only and opts.overwrite == 2:
            keep |= there & ((flags & NEWER) != 0)
        if opts.checksum:
            keep |= same & ((flags & (HASHED | SAME_HASH)) == (HASHED | SAME_HASH)) & (sizes < opts.small_file)
        elif opts.mode == DIFFERENCE:
            keep |= same
        keep &= is_file
        if opts.mode == DIFFERENCE:
            keep |= is_link & there & ((flags & SAME_MTIME) != 0)
        return keep

    def _account_many(self, count: int, nbytes: int) -> None:
        """Account ``count`` entries of ``nbytes`` in all as skipped."""
        if not count:
            return
        with self._lock:
            self.result.strategies[SKIPPED] += count
            self._remaining -= nbytes
            self.result.bytes_skipped += nbytes
        self._progressed(nbytes)

    def _put(self, work: "queue.Queue[tuple[Entry, Entry | None] | None]",
             item: tuple[Entry, Entry | None]) -> bool:
        try:
            work.put(item, timeout=0.5)
            return True
        except queue.Full:
            return False

    def _finish(self, batch: _Batch, dirs: list[Entry], links: list[tuple[Entry, Entry | None]]) -> None:
        """Hard links once their first names exist, then folder attributes
        (deepest first), then wait for the target to apply everything."""
        self.conn.flush()
        for e, t in links:
            first = self._sources[(e.dev, e.ino)]
            if t is not None and self.opts.mode == DIFFERENCE and t.kind == FILE and \
                    t.size == e.size and t.mtime_ns == e.mtime_ns:
                self._account(e, SKIPPED, e.size)
                continue
            batch.add(Op(OpKind.LINK, *self._next_op(), e.path, 0, first))
            batch.file_done(e.path)
            self.result.hard_links += 1
            self._account(e, WHOLE)
        # writing into a folder moves its time: set folder attributes last
        for e in dirs:
            batch.add(Op(OpKind.SETATTR, *self._next_op(), e.path, 0, e.attrs()))
        batch.flush()
        self._set_status(WAITING)
        self.conn.flush()

    def _orphans(self, candidates: list[Entry]) -> None:
        cutoff = time.time_ns() - self.opts.orphan_minutes * 60 * 10**9
        orphans = [t.path for t in candidates if self.opts.remove_all_orphans or t.mtime_ns < cutoff]
        if not orphans:
            return
        label = self.conn.label()
        self._set_status(REMOVING_ORPHANS)
        emit(4048, conn=label)
        n = self.opts.orphan_batch
        for i in range(0, len(orphans), n):
            reply, _ = self.conn.call("orphans", paths=[p.hex() for p in orphans[i:i + n]],
                                      move=self.opts.move_orphans)
            for k in self.result.orphans:
                self.result.orphans[k] += int(reply.get(k, 0))
        emit(4052, conn=label)

    # -- per file --------------------------------------------------------------
    def _worker(self, work: "queue.Queue[tuple[Entry, Entry | None] | None]", resume: bool) -> None:
        batch = _Batch(self)
        try:
            while True:
                item = work.get()
                if item is None:
                    break
                if self._error is not None:
                    continue
                e, t = item
                self._file(batch, e, t, resume and e.path in self.started)
            batch.flush()
        except BaseException as exc:  # noqa: BLE001 - handed to run() to raise
            if self._error is None:
                self._error = exc
            while work.get() is not None:
                pass

    def _file(self, batch: _Batch, e: Entry, t: Entry | None, cut_short: bool) -> None:
        opts = self.opts
        if e.kind == LINK:
            self._symlink(batch, e, t)
            return
        verify_only = opts.verify and not opts.remirror
        if t is not None and t.kind == FILE and not cut_short and not verify_only:
            if opts.overwrite == 0 or (opts.overwrite == 2 and t.mtime_ns >= e.mtime_ns):
                self._account(e, SKIPPED, e.size)
                return
        if e.size == 0 and not opts.zero_k_files:
            self._account(e, SKIPPED)
            return
        same_attrs = t is not None and t.kind == FILE and t.size == e.size and t.mtime_ns == e.mtime_ns
        if t is not None and t.kind == FILE and not cut_short:
            if opts.checksum and e.size < opts.small_file and e.hash >= 0 and t.hash >= 0:
                if e.hash == t.hash and t.size == e.size:
                    self._same_content(batch, e, t)
                    return
            elif opts.mode == DIFFERENCE and same_attrs and not opts.checksum:
                self._same_content(batch, e, t)
                return
        with self._lock:
            self.started.add(e.path)
        if opts.verify and not opts.remirror:
            self._verify_file(e, t)
            return
        strategy = self._choose(e, t, cut_short)
        path = os.path.join(os.fsencode(self.repset.root), e.path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            emit(6001, detail=f"mirror skipped {os.fsdecode(e.path)}: {exc.strerror}")
            self._account(e, SKIPPED)
            return
        try:
            if strategy == ROLLING and not self._rolling(batch, e, fd):
                strategy = BLOCK
            if strategy == BLOCK and not self._blocks(batch, e, fd):
                if same_attrs and t is not None and t.mode == e.mode:
                    self._account(e, SKIPPED, e.size)
                    batch.file_done(e.path)
                    return
                strategy = ATTRIBUTES
            elif strategy == WHOLE:
                self._whole(batch, e, fd, t)
        finally:
            os.close(fd)
        batch.add(Op(OpKind.SETATTR, *self._next_op(), e.path, 0, e.attrs()))
        batch.file_done(e.path)
        if opts.verify:  # verify with remirror: say what was sent again
            self._difference(e.path, _why(e, t, strategy) + "; remirrored")
        self._account(e, strategy, e.size if strategy == ATTRIBUTES else 0)

    def _same_content(self, batch: _Batch, e: Entry, t: Entry) -> None:
        """Content matches: at most the attributes differ."""
        if (t.mtime_ns, t.mode) == (e.mtime_ns, e.mode) or self.opts.verify and not self.opts.remirror:
            if self.opts.verify and (t.mtime_ns, t.mode) != (e.mtime_ns, e.mode):
                self._difference(e.path, "attributes differ")
            self._account(e, SKIPPED, e.size)
            return
        batch.add(Op(OpKind.SETATTR, *self._next_op(), e.path, 0, e.attrs()))
        batch.file_done(e.path)
        self._account(e, ATTRIBUTES, e.size)

    def _choose(self, e: Entry, t: Entry | None, cut_short: bool) -> str:
        if t is None or t.kind != FILE or t.size == 0:
            return WHOLE
        if cut_short:
            return BLOCK
        if e.size < self.opts.small_file:
            return WHOLE
        # hashing both copies (in parallel) against sending every byte
        hash_cost = max(e.size, t.size) / self.rates.hash
        send_cost = e.size / self.rates.net
        if hash_cost >= send_cost:
            return WHOLE
        shifted = e.size != t.size and (e.size - t.size) % self.opts.block != 0 and e.size > t.size // 2
        return ROLLING if shifted else BLOCK

    def _whole(self, batch: _Batch, e: Entry, fd: int, t: Entry | None) -> None:
        batch.add(Op(OpKind.CREATE, *self._next_op(), e.path, 0o600))
        size = os.fstat(fd).st_size
        extents = _extents(fd, size, self.opts.sparse)
        for start, end in extents:
            self._send_range(batch, e.path, fd, start, end)
        if not extents or extents[-1][1] < size:  # a trailing hole
            batch.add(Op(OpKind.TRUNCATE, *self._next_op(), e.path, size))

    def _send_range(self, batch: _Batch, path: bytes, fd: int, start: int, end: int) -> None:
        chunk = self.opts.block
        pos = start
        while pos < end:
            n = min(_FRAME_BYTES, end - pos)
            data = os.pread(fd, n, pos)
            if not data:
                break
            view = memoryview(data)
            for off in range(0, len(data), chunk):
                batch.add(Op(OpKind.WRITE, *self._next_op(), path, pos + off, view[off:off + chunk]))
            pos += len(data)

    def _blocks(self, batch: _Batch, e: Entry, fd: int) -> bool:
        """Send the blocks whose checksums differ (and the new size); returns
        whether anything had to change."""
        block, per = self.opts.block, self.opts.max_checksum_blocks
        size = os.fstat(fd).st_size
        changed = False
        target_size = -1
        for first, reply, theirs in self.conn.block_sums(e.path, size, block, per, _WINDOW):
            offset = first * block
            t0 = time.perf_counter()
            ours = _sums(fd, offset, min(block * per, size - offset), block)
            self.rates.hashed(len(ours) * block, time.perf_counter() - t0)
            target_size = reply.get("size", -1)
            for lo, hi in differing_ranges(ours, theirs).tolist():
                self._send_range(batch, e.path, fd, offset + lo * block, min(offset + hi * block, size))
                changed = True
        if target_size != size:
            batch.add(Op(OpKind.TRUNCATE, *self._next_op(), e.path, size))
            changed = True
        return changed

    def _rolling(self, batch: _Batch, e: Entry, fd: int) -> bool:
        """Send a rolling delta; False when it would be too large for a frame."""
        reply, data = self.conn.call("signature", path=e.path.hex(), block=self.opts.block)
        n = int(reply.get("blocks", 0))
        if reply.get("size", -1) <= 0 or len(data) != 16 * n:
            return False
        arrays = np.frombuffer(data, dtype=np.uint64)
        sig = Signature(self.opts.block, int(reply["size"]), arrays[:n].copy(), arrays[n:].copy())
        t0 = time.perf_counter()
        d = file_delta(sig, os.path.join(os.fsencode(self.repset.root), e.path))
        self.rates.hashed(e.size, time.perf_counter() - t0)
        body = patch_size(d.instructions, d.literals)
        link = self.conn.link
        if link is None or body > link.ch.max_frame // 2:
            return False
        patch = encode_patch(d.instructions, d.source_hash, d.literals)
        batch.add(Op(OpKind.PATCH, *self._next_op(), e.path, d.source_size, patch))
        return True

    def _symlink(self, batch: _Batch, e: Entry, t: Entry | None) -> None:
        text = os.readlink(os.path.join(os.fsencode(self.repset.root), e.path))
        flags = 0
        root = os.fsencode(self.repset.root).rstrip(b"/") + b"/"
        if self.opts.remap_link and text.startswith(root) and len(text) > len(root):
            text, flags = text[len(root):], LINK_ROOTED
        if t is not None and t.kind == LINK and t.mtime_ns == e.mtime_ns and \
                self.opts.mode == DIFFERENCE:
            self._account(e, SKIPPED)
            return
        if self.opts.verify and not self.opts.remirror:
            if t is None or t.kind != LINK:
                self._difference(e.path, "symlink missing on the target")
            self._account(e, SKIPPED)
            return
        batch.add(Op(OpKind.SYMLINK, *self._next_op(), e.path, flags, text))
        batch.add(Op(OpKind.SETATTR, *self._next_op(), e.path, 0,
                     Attrs(Attrs.TIMES, 0, 0, 0, e.atime_ns, e.mtime_ns).pack()))
        batch.file_done(e.path)
        self._account(e, WHOLE)

    # -- verify --------------------------------------------------------------
    def _verify_file(self, e: Entry, t: Entry | None) -> None:
        if t is None or t.kind != FILE:
            self._difference(e.path, "missing on the target")
        elif t.size != e.size:
            self._difference(e.path, f"size {t.size} on the target, {e.size} on the source")
        else:
            path = os.path.join(os.fsencode(self.repset.root), e.path)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise FileAccessError(f"cannot read {os.fsdecode(path)}: {exc.strerror}") from None
            try:
                differ = self._count_differing(e, fd)
            finally:
                os.close(fd)
            if differ:
                self._difference(e.path, f"{differ} of {-(-e.size // self.opts.block)} blocks differ")
            elif t.mtime_ns != e.mtime_ns:
                self._difference(e.path, "modification times differ")
        self._account(e, SKIPPED, e.size)

    def _count_differing(self, e: Entry, fd: int) -> int:
        block, per = self.opts.block, self.opts.max_checksum_blocks
        differ = 0
        for first, _, theirs in self.conn.block_sums(e.path, e.size, block, per, _WINDOW):
            ours = _sums(fd, first * block, min(per * block, e.size - first * block), block)
            differ += sum(hi - lo for lo, hi in differing_ranges(ours, theirs).tolist())
        return differ

    def _difference(self, path: bytes, reason: str) -> None:
        with self._lock:
            self.result.differences.append((os.fsdecode(path), reason))
        if self.verify_log is not None:
            self.verify_log.write(os.fsdecode(path), reason)


def _why(e: Entry, t: Entry | None, strategy: str) -> str:
    if t is None or t.kind != FILE:
        return "missing on the target"
    if t.size != e.size:
        return f"size {t.size} on the target, {e.size} on the source"
    return "attributes differ" if strategy == ATTRIBUTES else "content differs"


def _sums(fd: int, offset: int, length: int, block: int) -> np.ndarray:
    """The source's own checksums of one range (none past the end)."""
    if length <= 0:
        return np.zeros(0, np.uint64)
    return _checksum.fd_checksums(fd, offset, length, block, "source file")


def _extents(fd: int, size: int, sparse: bool) -> list[tuple[int, int]]:
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
