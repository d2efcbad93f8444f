"""Mirrors: make the target path hold what the replication set holds.

The source asks the target for its manifest (with checksums, the target
hashes its small files while listing) and walks its own set meanwhile, both
in parts (``PART``, ``MANIFEST_PART``) that go on in one order, so neither
side ever holds a large set's whole listing.  Each part of the source's walk
is compared in bulk with the target's entries up to its last path: entries
that are the same on both sides are accounted at once
(:func:`plan.unchanged`), and only the rest go through a bounded file queue
(``FileQueueSize``) to worker threads, which plan each file
(:func:`plan.plan_file`) and carry the plan out (:class:`send.Sender`).
Hard links, orphans (:mod:`orphans`) and folder attributes go last.

Every file is marked done when the target acknowledges its last op, so a
mirror cut by a lost connection resumes after reconnecting: finished files
are not sent again and a file cut mid-way is compared block by block, so
only its missing part travels.  Every ``DONE_MAX`` entries the mirror
settles: once the target has acknowledged all it was sent so far, the mirror
keeps the walk's last path instead of the names before it, and a resumed
run takes every file before that path as done.  Verify runs the same comparison and reports
(:mod:`verify`)."""
from __future__ import annotations

import os
import queue
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np

from dtcore.control.events import emit
from dtcore.control.stats import PERCENT_SCALE
from dtcore.control.timers import StageTimers
from dtcore.errors import InvalidParameterError, from_code
from dtcore.model.manifest import (
    DIR,
    FILE,
    HASHED,
    KIND_DIR,
    KIND_FILE,
    KIND_LINK,
    LINK,
    SAME_HASH,
    SAME_KIND,
    SAME_MODE,
    SAME_MTIME,
    SAME_SIZE,
    THERE,
    Entry,
    Listing,
    order_key,
)
from dtcore.model.ops import Op, OpKind
from dtcore.model.repset import ReplicationSet
from dtcore.protocol.messages import (
    MIRRORING,
    OK,
    ManifestRequest,
    Notice,
    OpFailure,
)
from dtcore.source.connection import Connection
from dtcore.source.mirror.options import (
    ATTRIBUTES,
    BLOCK,
    CALCULATING,
    DIFFERENCE,
    IDLE,
    IN_PROGRESS,
    REMOVING_ORPHANS,
    ROLLING,
    SKIPPED,
    STOPPED,
    VERIFYING,
    WAITING,
    WHOLE,
    MirrorOptions,
    MirrorResult,
)
from dtcore.source.mirror.orphans import remove_orphans, select_orphans
from dtcore.source.mirror.parts import Folders, TheirParts
from dtcore.source.mirror.plan import SAME, VERIFY, Rates, plan_file, unchanged, why
from dtcore.source.mirror.send import SMALL_WHOLE, FrameBatch, Sender
from dtcore.source.mirror.verify import file_difference
from dtcore.source.verifylog import VerifyLog


# The mirror walks, compares and sends the set in parts of about this many
# bytes of manifest records (some 50,000 entries), so its memory follows a
# part, not the size of the set.
PART = 4 << 20
# Entries handed out after which the mirror settles (_settle), forgetting
# the names of those acknowledged.
DONE_MAX = 65536
# Told to a worker: send what you hold, then wait at the barrier.
_FLUSH = (Entry(b"", DIR, 0, 0, 0, 0, 0, 0, 0, 0, 0), None)


class _Run:
    """What one run gathers across the parts of its walk for the end."""

    def __init__(self) -> None:
        self.first = True
        self.walked = True  # the walk reached its end (not stopped)
        self.last: bytes | None = None  # the last path it reached
        self.special: list[tuple[str, bytes]] = []
        self.links: list[tuple[Entry, Entry | None]] = []
        self.folders = Folders()
        self.orphans: list[Entry] = []  # with orphan removal
        self.target_only: list[bytes] = []  # with verify

    def unmatched(self, theirs: Listing, matched: np.ndarray | None, opts: MirrorOptions) -> None:
        """Their entries no entry of ours matched (all when ``matched`` is None)."""
        if not (opts.orphans or opts.verify):
            return
        left = np.flatnonzero(~matched) if matched is not None else np.arange(len(theirs))
        if opts.orphans:
            self.orphans.extend(theirs.entry(j) for j in left.tolist())
        else:
            self.target_only.extend(theirs.path(j) for j in left.tolist())


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
        self.rates = Rates()
        self.sender = Sender(conn, os.fsencode(repset.root), options, self.rates)
        # files the target acknowledged since the last settle, and the walk's
        # last path then (a resumed mirror takes every file before it as done)
        self.done: set[bytes] = set()
        self.done_upto: bytes | None = None
        self.started: set[bytes] = set()  # files being sent, until acknowledged
        self.part_bytes = PART
        self._unsettled = 0  # entries handed out since the last settle
        self._acked_upto: bytes | None = None  # the last settle the target acknowledged
        self._barrier = threading.Barrier(1)
        self._lock = threading.Lock()
        self._remaining = 0
        self._total = 0
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._sources: dict[tuple[int, int], bytes] = {}
        self.timers: StageTimers | None = None  # a profile times the stages
        self.files_to_plan = 0  # regular files the comparison left to look at one by one

    @property
    def writes(self) -> bool:
        """Whether this run sends ops and changes the target (a profile does
        all a mirror does but that; a verify or a dry run neither)."""
        o = self.opts
        return not (o.verify_only or o.dry_run or o.profile)

    @contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        if self.timers is None:
            yield
        else:
            with self.timers.timed(stage):
                yield

    # -- bookkeeping -----------------------------------------------------------
    def _mark_done(self, path: bytes) -> None:
        with self._lock:
            self.done.add(path)
            self.started.discard(path)

    def _generated(self, ops: int, nbytes: int, wire: int) -> None:
        srv = self.conn.stats.server
        srv.add("MirOpsGenerated", ops)
        srv.add("MirBytesGenerated", nbytes)
        with self._lock:
            self.result.bytes_sent += nbytes
            self.result.wire_bytes += wire

    def _batch(self) -> FrameBatch:
        return FrameBatch(self.conn, self._mark_done, self._generated)

    def _account(self, entry: Entry, strategy: str, skipped: int = 0, item: str = "") -> None:
        with self._lock:
            self.result.strategies[strategy] += 1
            self._remaining -= entry.size
            self.result.bytes_skipped += skipped
            if self.opts.itemize and strategy != SKIPPED and not self.opts.dry_run:
                self.result.items.append((item or strategy, os.fsdecode(entry.path)))
        self._progressed(skipped)

    def _item(self, action: str, path: bytes) -> None:
        if self.opts.itemize:
            with self._lock:
                self.result.items.append((action, os.fsdecode(path)))

    def _account_many(self, count: int, nbytes: int) -> None:
        """Account ``count`` entries of ``nbytes`` in all as skipped."""
        if not count:
            return
        with self._lock:
            self.result.strategies[SKIPPED] += count
            self._remaining -= nbytes
            self.result.bytes_skipped += nbytes
        self._progressed(nbytes)

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
    def files_done(self) -> int:
        """Files (and links) dealt with so far, of ``result.files``."""
        return sum(self.result.strategies.values())

    @property
    def bytes_total(self) -> int:
        """Bytes of the files this mirror goes through."""
        return self._total

    @property
    def percent(self) -> float:
        if not self._total:
            return 100.0 if self.status in (IDLE, WAITING) else 0.0
        return 100.0 * (self._total - max(self._remaining, 0)) / self._total

    @property
    def bytes_remaining(self) -> int:
        return max(self._remaining, 0)

    def _set_status(self, status: str) -> None:
        self.status = status
        if self.progress is not None:
            self.progress(self)

    def stop(self) -> None:
        """Ask the running mirror to stop after the files in hand."""
        self._stop.set()

    def _would(self, action: str, e: Entry) -> None:
        with self._lock:
            self.result.planned.append((action, os.fsdecode(e.path)))

    def _difference(self, path: bytes, reason: str) -> None:
        with self._lock:
            self.result.differences.append((os.fsdecode(path), reason))
        if self.verify_log is not None:
            self.verify_log.write(os.fsdecode(path), reason)

    @property
    def notice(self) -> Notice | None:
        """The target's word on an op it is retrying, while nothing has been
        acknowledged since (None otherwise)."""
        return self.conn.tx.notice

    def _on_notice(self, notice: Notice) -> None:
        budget = self.opts.retry_budget
        if budget and notice.retries >= budget and self._error is None:
            self._refused(notice)
        if self.progress is not None:
            self.progress(self)

    def _refused(self, notice: Notice) -> None:
        """The retry budget is spent: end the mirror with the target's reason
        (the link closes, so the target stops retrying too)."""
        f = notice.failure
        detail = (f"the target cannot apply an op on {os.fsdecode(f.path)}: {f.reason} "
                  f"(errno {f.errno}), still failing after {notice.retries} attempts; stopped")
        emit(4022, conn=self.conn.label(), detail=detail)
        err = from_code(f.code, detail)
        err.failure = f  # type: ignore[attr-defined]
        err.result = self.result  # type: ignore[attr-defined]
        with self._lock:
            self._error = err
        link = self.conn.tx.link
        if link is not None:
            link.fail(err)

    # -- the whole mirror --------------------------------------------------------
    def run(self, resume: bool = False) -> MirrorResult:
        """Run the mirror.  With ``resume``, files already acknowledged are
        skipped and files that were under way are compared block by block.
        Ops the target gave up end it with the error of their code (-173 for
        a full target), carrying this mirror's result as ``result``; their
        files count as not sent, so the next mirror sends them again."""
        tx = self.conn.tx
        tx.on_notice_hook = self._on_notice
        tx.on_drained = self.rates.sent
        try:
            return self._run(resume)
        finally:
            # another mirror on this connection may have set its own since
            if tx.on_notice_hook == self._on_notice:
                tx.on_notice_hook = None
            if tx.on_drained == self.rates.sent:
                tx.on_drained = None

    def _run(self, resume: bool) -> MirrorResult:
        opts, conn = self.opts, self.conn
        if opts.orphans and not opts.verify_only and not opts.dry_run and not conn.target_path:
            raise InvalidParameterError(
                "orphan removal in a target's root would delete every other source's copy "
                "there; mirror into a target path to remove orphans")
        verify_only = opts.verify_only
        writes = self.writes
        start = time.monotonic()
        self._error = None  # a resumed run starts clean; what failed before is resent
        label = conn.label()
        self._set_status(CALCULATING)
        need_manifest = opts.mode == DIFFERENCE or opts.orphans or opts.overwrite != 1 or \
            opts.verify or resume
        hash_below = opts.small_file if opts.checksum and need_manifest else 0
        # ask first: the target lists (and hashes) its copy while we list ours
        theirs = TheirParts(conn.manifest_parts(conn.request(ManifestRequest(hash_below)))
                            if need_manifest else iter(()))
        self._total = self._remaining = 0
        self.result.files = self.result.directories = self.result.bytes_total = 0
        self.files_to_plan = 0
        if resume:
            self.result.resumed += 1
        c = conn.counters
        if not opts.profile:  # a profile is no mirror: the mirror's statistics stay as they are
            c["conMirrorBytesRemaining"] = 0
            c["conMirrorPercent"] = 0
            c["ConMirrorStartTime"] = int(time.time())
            c["ConMirrorEndTime"] = 0
            emit(4058 if opts.verify else 4019, conn=label)
        run = _Run()
        work: queue.Queue[tuple[Entry, Entry | None] | None] = queue.Queue(max(1, opts.file_queue))
        n_workers = max(1, opts.workers)
        self._barrier = threading.Barrier(n_workers + 1)
        workers = [threading.Thread(target=self._worker, args=(work, resume),
                                    name=f"dtcore-mirror-{i}", daemon=True)
                   for i in range(n_workers)]
        for t in workers:
            t.start()
        try:
            parts = self.repset.parts(self.part_bytes, hash_below)
            while not self._stop.is_set() and self._error is None:
                with self._timed("source: walk and hash the set"):
                    got = next(parts, None)
                if got is None:
                    break
                ours, last = got
                if last is None:
                    continue
                with self._timed("source: wait for the target's manifest"):
                    part = theirs.upto(last)
                self._part(ours, part, run, work)
                run.last = last
                self._settle(work, n_workers, last)
            else:
                run.walked = False
            if run.walked:
                with self._timed("source: wait for the target's manifest"):
                    run.unmatched(theirs.upto(None), None, opts)
        finally:
            for _ in workers:
                work.put(None)
            for t in workers:
                t.join()
        if self._error is not None:
            raise self._error
        if run.special:  # never copied: say so rather than leave them out in silence
            self.result.special = [(kind, os.fsdecode(path)) for kind, path in run.special]
            kind, path = run.special[0]
            emit(6001, detail=f"{len(run.special)} pipes, sockets or devices are not replicated "
                              f"(the first: {os.fsdecode(path)}, a {kind})")
        batch = self._batch()
        if opts.dry_run:
            for e, _ in run.links:
                self._would("link", e)
            if opts.orphans:
                for path in select_orphans(run.orphans, opts, time.time_ns()):
                    self.result.planned.append(("remove", os.fsdecode(path)))
        elif not verify_only:
            self._links(batch, run.links)
            if opts.orphans:  # before folder times: removing entries moves them
                if opts.profile:
                    self._count_orphans(run.orphans)
                else:
                    self._orphans(run.orphans)
            touched = self.result.bytes_sent > 0 or any(self.result.strategies[k] for k in (
                WHOLE, BLOCK, ROLLING, ATTRIBUTES)) or any(self.result.orphans.values())
            self._folders(batch, run.folders.deepest_first(touched))
        if opts.verify and not (opts.orphans and not verify_only):
            for path in sorted(run.target_only):
                self._difference(path, "on the target only")
        if writes and run.walked and run.last is not None and not conn.tx.dropped:
            # _folders waited for every op: the whole walk is acknowledged
            with self._lock:
                self.done_upto, self.done = run.last, set()
        failures = conn.tx.take_dropped()
        if failures:
            self._failed(failures, start)
        if self._stop.is_set():
            emit(4061 if opts.verify else 4022, conn=label, detail="stopped by request")
            self.status = STOPPED
        elif opts.profile:
            self._set_status(IDLE)
        else:
            if writes:
                conn.set_state(OK, "mirror complete")
            c["ConMirrorEndTime"] = int(time.time())
            c["conMirrorPercent"] = 100 * PERCENT_SCALE
            c["conMirrorBytesRemaining"] = 0
            emit(4062 if opts.verify else 4023, conn=label,
                 detail=f"{self.result.files} files, {self.result.bytes_sent} bytes sent",
                 differences=len(self.result.differences))
            self._set_status(IDLE)
        self.result.seconds = time.monotonic() - start
        return self.result

    def _part(self, ours: Listing, theirs: Listing, run: "_Run",
              work: "queue.Queue[tuple[Entry, Entry | None] | None]") -> None:
        """Compare one part of the walk with the target's entries up to its
        last path, and send what differs: folders made first, unchanged
        files accounted at once, small files in bulk, the rest handed to the
        workers.  Hard links, orphans and folder attributes wait for the end."""
        opts, conn = self.opts, self.conn
        verify_only = opts.verify_only
        writes = self.writes
        run.special.extend(ours.special())
        kinds, sizes = ours.columns()
        is_dir, is_file, is_link = kinds == KIND_DIR, kinds == KIND_FILE, kinds == KIND_LINK
        todo = np.ones(len(ours), dtype=bool)
        if self.done_upto is not None:  # resuming: files acknowledged before the last settle
            n = ours.upto(order_key(self.done_upto))
            todo[:n] = is_dir[:n]
        if self.done:  # ... and after it
            todo &= ~ours.among(self.done)
        nbytes = int(sizes[todo].sum())
        with self._lock:
            self._total += nbytes
            self._remaining += nbytes
        self.result.files += int((todo & ~is_dir).sum())
        self.result.directories += int((todo & is_dir).sum())
        self.result.bytes_total = self._total
        if not opts.profile:
            self._progressed(0)
        with self._timed("source: compare the manifests"):
            flags, match = ours.compare(theirs)
        if run.first:
            run.first = False
            if writes:
                conn.set_state(MIRRORING)
            self._set_status(VERIFYING if opts.verify else IN_PROGRESS)
        there = (flags & (THERE | SAME_KIND)) == (THERE | SAME_KIND)
        batch = self._batch()
        if not verify_only:
            live = conn.tx.rep is not None
            for i in np.flatnonzero(todo & is_dir & ~there).tolist():
                e = ours.entry(i)
                if opts.dry_run:
                    self._would("mkdir", e)
                    continue
                if live:
                    # a replication may move the folder meanwhile: its op
                    # waits until this one has left, and a folder gone
                    # since the listing is not made again
                    conn.tx.claim(e.path)
                    if not os.path.isdir(self.sender.path(e)):
                        conn.tx.release(e.path)
                        continue
                batch.add(Op(OpKind.MKDIR, *self.sender.next_op(), e.path, e.mode))
                self._item("mkdir", e.path)
                if live:
                    batch.file_done(e.path)
            batch.flush()
        skip = todo & unchanged(opts, flags, there, is_file, is_link, sizes)
        if self.started:  # files cut short by a lost connection are compared again
            skip &= ~ours.among(self.started)
        self._account_many(int(skip.sum()), int(sizes[skip].sum()))
        if opts.xattrs and writes:
            # what is unchanged is not read again, but its extended
            # attributes are, so that a change to those alone is sent
            for i in np.flatnonzero(skip).tolist():
                self.sender.xattrs(batch, ours.entry(i), only_if_any=True)
            batch.flush()
        assert ours.ids is not None
        twin = is_file & (ours.ids[:, 2] > 1)  # hard-linked: even skipped ones name a first
        sent = self._small_files(ours, todo & is_file & ~skip & ~twin, there, flags, sizes) \
            if writes else np.zeros(len(ours), dtype=bool)
        self.files_to_plan += int((todo & is_file & ~skip & ~sent).sum())
        if writes:  # only what is sent is acknowledged
            self._unsettled += int((todo & ~skip).sum())
        for i in np.flatnonzero(todo & ~is_dir & (~skip | twin) & ~sent).tolist():
            if self._stop.is_set() or self._error is not None:
                return
            e = ours.entry(i)
            t = theirs.entry(int(match[i])) if match[i] >= 0 else None
            if twin[i]:
                # hard links: the first name is sent, the others link to it
                first = self._sources.setdefault((e.dev, e.ino), e.path)
                if skip[i]:
                    continue
                if first != e.path:
                    run.links.append((e, t))
                    continue
            while not _put(work, (e, t)):
                if self._error is not None:
                    return
        matched = np.zeros(len(theirs), dtype=bool)
        matched[match[match >= 0]] = True
        run.unmatched(theirs, matched, opts)
        attrs_differ = (flags & (SAME_MTIME | SAME_MODE)) != (SAME_MTIME | SAME_MODE)
        if not (verify_only or opts.dry_run):
            run.folders.add(ours, todo & is_dir, ~there | attrs_differ)

    def _settle(self, work: "queue.Queue[tuple[Entry, Entry | None] | None]", n_workers: int,
                last: bytes) -> None:
        """Every DONE_MAX entries handed out, have the workers send what
        they hold and note the walk's last path; once the target has
        acknowledged everything sent before that, keep the path instead of
        the names before it: a resumed mirror takes those files as done."""
        self._forget()
        if self._unsettled < DONE_MAX or self._error is not None:
            return
        self._unsettled = 0
        for _ in range(n_workers):
            work.put(_FLUSH)
        try:
            self._barrier.wait()
        except threading.BrokenBarrierError:
            return  # a worker failed: run() raises its error

        def acked() -> None:
            self._acked_upto = last
        self.conn.tx.when_acked(acked)

    def _forget(self) -> None:
        """Keep the last settle the target acknowledged instead of the
        names before it."""
        reached = self._acked_upto
        if reached is None:
            return
        key = order_key(reached)
        with self._lock:
            if not self.conn.tx.dropped and (  # given up: those files are not done
                    self.done_upto is None or key > order_key(self.done_upto)):
                self.done_upto = reached
                # names past it were acknowledged in an earlier run
                self.done = {p for p in self.done if order_key(p) > key}

    def _small_files(self, ours: Listing, files: np.ndarray, there: np.ndarray,
                     flags: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """Send in bulk the small ``files`` that plan_file would send whole:
        those the target lacks, and those it has whose content differs (in a
        full mirror that overwrites without checksums, all it has); returns
        which entries were sent.  What needs a look of its own stays out:
        extended attributes, a claim against a live replication, a verify's
        report, a file cut short before."""
        opts = self.opts
        sent = np.zeros(len(ours), dtype=bool)
        if opts.xattrs or opts.verify or self.started or self.conn.tx.rep is not None:
            return sent
        if opts.mode != DIFFERENCE and opts.overwrite == 1 and not opts.checksum:
            resend = there
        else:  # where plan_file finds the content the same, only attributes go
            same = (HASHED | SAME_HASH | SAME_SIZE) if opts.checksum else (SAME_SIZE | SAME_MTIME)
            resend = there & ((flags & same) != same)
        picked = files & (~there | (resend & (sizes < opts.small_file))) & \
            (sizes <= SMALL_WHOLE) & ((sizes > 0) | opts.zero_k_files)
        for body, ops, data, packed in self.sender.small_files(ours, np.flatnonzero(picked)):
            sent[packed] = True
            paths = [ours.path(i) for i in packed.tolist()]
            wire = self.conn.send_batch(body, ops, on_applied=self._marker(paths))
            self._generated(ops, data, wire)
            with self._lock:
                self.result.strategies[WHOLE] += len(paths)
                self._remaining -= int(sizes[packed].sum())
                if opts.itemize:
                    self.result.items.extend((WHOLE, os.fsdecode(p)) for p in paths)
            self._progressed(0)
        return sent

    def _marker(self, paths: list[bytes]) -> Callable[[], None]:
        def applied() -> None:
            with self._lock:
                self.done.update(paths)
        return applied

    def _failed(self, failures: list[OpFailure], start: float) -> None:
        """The target gave ops up: the mirror is incomplete, say so and raise."""
        with self._lock:
            for f in failures:
                self.done.discard(f.path)
                self.result.dropped.append((os.fsdecode(f.path), f.code, f.errno, f.reason))
        first = failures[0]
        code = -173 if any(f.code == -173 for f in failures) else first.code
        detail = (f"the target gave up {len(failures)} op(s), first on "
                  f"{os.fsdecode(first.path)} ({first.reason}); it needs a remirror")
        emit(4022, conn=self.conn.label(), detail=detail)
        self.status = STOPPED
        self.result.seconds = time.monotonic() - start
        err = from_code(code, detail)
        err.result = self.result  # type: ignore[attr-defined]
        raise err

    def _links(self, batch: FrameBatch, links: list[tuple[Entry, Entry | None]]) -> None:
        """Hard links, once their first names exist on the target."""
        self.conn.flush()
        for e, t in links:
            first = self._sources[(e.dev, e.ino)]
            if t is not None and self.opts.mode == DIFFERENCE and t.kind == FILE and \
                    t.size == e.size and t.mtime_ns == e.mtime_ns:
                self._account(e, SKIPPED, e.size)
                continue
            batch.add(Op(OpKind.LINK, *self.sender.next_op(), e.path, 0, first))
            batch.file_done(e.path)
            self.result.hard_links += 1
            self._account(e, WHOLE, item="link")
        batch.flush()

    def _folders(self, batch: FrameBatch, dirs: list[Entry]) -> None:
        """Folder attributes last, deepest first (writing into a folder, or
        removing from it, moves its time), the target path's own folder
        after them all; then wait for the target to apply everything."""
        for e in dirs:
            now = self._look(e)
            if now is not None:
                self.sender.attributes(batch, now)
                if now is not e:  # claimed
                    batch.release_after(e.path)
        batch.flush()
        self._set_status(WAITING)
        self.conn.flush()
        self.conn.set_root_attrs(self.repset.root)

    def _orphans(self, candidates: list[Entry]) -> None:
        orphans = select_orphans(candidates, self.opts, time.time_ns())
        if not orphans:
            return
        label = self.conn.label()
        self._set_status(REMOVING_ORPHANS)
        emit(4048, conn=label)
        for path in orphans:
            self._item("remove", path)
        removed = remove_orphans(self.conn, orphans, self.opts)
        self.result.orphans["files"] += removed.files
        self.result.orphans["directories"] += removed.directories
        self.result.orphans["bytes"] += removed.bytes
        if removed.moved:
            self.result.orphans["moved"] = 1
        emit(4052, conn=label)

    def _count_orphans(self, candidates: list[Entry]) -> None:
        """What orphan removal would remove, counted and not done (a profile)."""
        chosen = set(select_orphans(candidates, self.opts, time.time_ns()))
        for e in candidates:
            if e.path in chosen:
                key = "directories" if e.kind == DIR else "files"
                self.result.orphans[key] += 1
                self.result.orphans["bytes"] += e.size if e.kind == FILE else 0

    # -- per file --------------------------------------------------------------
    def _worker(self, work: "queue.Queue[tuple[Entry, Entry | None] | None]", resume: bool) -> None:
        """Take files until this worker's stop marker (one None per worker).
        After a failure the worker keeps taking, without working, until it
        has its own marker, and never one more: another worker waits for that."""
        batch = self._batch()
        stopped = False
        try:
            while True:
                item = work.get()
                if item is None:
                    stopped = True
                    break
                if item is _FLUSH:
                    if self._error is None:
                        batch.flush()
                        self._barrier.wait()
                elif self._error is None:
                    e, t = item
                    self._file(batch, e, t, resume and e.path in self.started)
            batch.flush()  # may fail too, after the marker was taken
        except BaseException as exc:  # noqa: BLE001 - handed to run() to raise
            with self._lock:
                if self._error is None:
                    self._error = exc
            self._barrier.abort()  # run() may wait for this worker to flush
            while not stopped:
                stopped = work.get() is None

    def _file(self, batch: FrameBatch, e: Entry, t: Entry | None, cut_short: bool) -> None:
        opts = self.opts
        if e.kind == LINK:
            self._symlink(batch, e, t)
            return
        plan = plan_file(e, t, opts, self.rates, cut_short)
        if plan == SKIPPED:
            if not (opts.dry_run or opts.verify_only):
                self.sender.xattrs(batch, e, only_if_any=True)
            self._account(e, SKIPPED, e.size)
            return
        if plan == SAME:
            assert t is not None
            self._same_content(batch, e, t)
            return
        if opts.dry_run:
            self._would(plan, e)
            self._account(e, plan)
            return
        with self._lock:
            self.started.add(e.path)
        if plan == VERIFY:
            reason = file_difference(self.conn, self.sender.path(e), e, t, opts)
            if reason is not None:
                self._difference(e.path, reason)
            self._account(e, SKIPPED, e.size)
            return
        # held from before the file is read until its frames are sent (the
        # batch's flush ends it): replication ops on it wait behind them
        self.conn.tx.claim(e.path)
        try:
            self._transfer(batch, e, t, plan)
        finally:
            if e.path not in batch.done:  # nothing of it waits to be sent
                self.conn.tx.release(e.path)

    def _transfer(self, batch: FrameBatch, e: Entry, t: Entry | None, plan: str) -> None:
        opts = self.opts
        strategy = plan
        try:
            fd = os.open(self.sender.path(e), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            emit(6001, detail=f"mirror skipped {os.fsdecode(e.path)}: {exc.strerror}")
            self.conn.stats.server.add("FailedMirrorCount")
            self._account(e, SKIPPED)
            return
        try:
            if strategy == ROLLING and not self.sender.rolling(batch, e):
                strategy = BLOCK
            if strategy == BLOCK and not self.sender.blocks(batch, e, fd):
                same_attrs = t is not None and t.kind == FILE and t.size == e.size and \
                    t.mtime_ns == e.mtime_ns and t.mode == e.mode
                if same_attrs:
                    self._account(e, SKIPPED, e.size)
                    batch.file_done(e.path)
                    return
                strategy = ATTRIBUTES
            elif strategy == WHOLE:
                self.sender.whole(batch, e, fd)
            # the attributes of what was read: a file changed since the
            # listing must not get the listing's older times with newer data
            now = e.now(os.fstat(fd))
        finally:
            os.close(fd)
        self.sender.attributes(batch, now)
        batch.file_done(e.path)
        if opts.verify:  # verify with remirror: say what was sent again
            self._difference(e.path, why(e, t, strategy) + "; remirrored")
        self._account(e, strategy, e.size if strategy == ATTRIBUTES else 0)

    def _same_content(self, batch: FrameBatch, e: Entry, t: Entry) -> None:
        """Content matches: at most the attributes differ."""
        if (t.mtime_ns, t.mode) == (e.mtime_ns, e.mode) or self.opts.verify_only:
            if self.opts.verify and (t.mtime_ns, t.mode) != (e.mtime_ns, e.mode):
                self._difference(e.path, "attributes differ")
            elif not (self.opts.verify_only or self.opts.dry_run):
                self.sender.xattrs(batch, e, only_if_any=True)
            self._account(e, SKIPPED, e.size)
            return
        if self.opts.dry_run:
            self._would(ATTRIBUTES, e)
            self._account(e, ATTRIBUTES, e.size)
            return
        now = self._look(e)
        if now is None:
            self._account(e, SKIPPED, e.size)
            return
        self.sender.attributes(batch, now)
        batch.file_done(e.path)
        self._account(e, ATTRIBUTES, e.size)

    def _look(self, e: Entry) -> Entry | None:
        """``e`` as it is now, when a live replication may have changed it
        since the listing: a new look, taken under a claim so that the
        replication's own ops on it follow what the mirror sends, or None
        when it is gone.  Without replication, ``e`` itself."""
        if self.conn.tx.rep is None:
            return e
        self.conn.tx.claim(e.path)
        try:
            return e.now(os.lstat(self.sender.path(e)))
        except OSError:  # gone: its removal is the replication's to send
            self.conn.tx.release(e.path)
            return None

    def _symlink(self, batch: FrameBatch, e: Entry, t: Entry | None) -> None:
        if t is not None and t.kind == LINK and t.mtime_ns == e.mtime_ns and \
                self.opts.mode == DIFFERENCE:
            self._account(e, SKIPPED)
            return
        if self.opts.verify_only:
            if t is None or t.kind != LINK:
                self._difference(e.path, "symlink missing on the target")
            self._account(e, SKIPPED)
            return
        if self.opts.dry_run:
            self._would("symlink", e)
            self._account(e, WHOLE)
            return
        now = self._look(e)
        if now is None:
            self._account(e, SKIPPED)
            return
        self.sender.symlink(batch, now)
        batch.file_done(e.path)
        self._account(e, WHOLE, item="symlink")


def _put(work: "queue.Queue[tuple[Entry, Entry | None] | None]",
         item: tuple[Entry, Entry | None]) -> bool:
    try:
        work.put(item, timeout=0.5)
        return True
    except queue.Full:
        return False
