"""Live replication of a replication set over a connection.

The embedding program reports each file operation as it happens (or writes
through :meth:`Replication.open`, which does the file's writes and reports
them); the ops go intake -> merge -> queue (:mod:`dtcore.source.pipeline`)
-> transmitter (:mod:`dtcore.source.rep_stream`) -> target, which applies
them in order, each batch once, and acknowledges.  A supervisor thread
reconnects a cut link (``AutoReconnect``) and the unacknowledged batches go
again.

What a call promises depends on ``QLogWriteThrough``:

- 1: when a call returns, its ops are in the journal on disk (fdatasync).
  A crash of the process or the machine after that loses none of them; the
  restarted replication sends them from the journal.
- 0: when a call returns, its ops are in this process's memory (the intake
  buffer, moved to the queue within ``coalesce`` seconds); they reach the
  journal only past ``MemoryQueueToDiskThreshold`` or at a clean close.  A
  crash may lose them, so a replication restarted after one marks the
  target Mirror Required (see :attr:`Replication.needs_mirror`).

Replication while a mirror runs on the same connection (the rule that
leaves the target right):

- A file the mirror has not reached yet: its ops go out at once, flagged,
  and the target takes an op on a path it does not have yet as no failure;
  the mirror reads the file later, after the op changed it, and sends the
  times, mode and owner of what it read (or, for a folder, a symlink or a
  file whose content matched, of a look taken under a claim), never the
  older ones of its listing.
- A file the mirror is reading or sending: the mirror claims it before the
  first read, and a replication record touching it (or a folder above it)
  waits until the mirror's frames for it have left, even while the mirror is
  paused by target flow control.  The op is then applied after the mirror's
  copy, never under it.  Other records keep their order behind it.
- A file the mirror has finished: its ops go out as usual.
- Names: an op that renames or removes what the mirror listed but has not
  sent yet leaves the mirror nothing to read at the old name, so a mirror
  during which ops arrived ends with up to two difference passes by
  attributes (``Engine.mirror``), which bring the new names across.  A
  pass can be raced the same way; the target tells the source which names
  its tolerated ops found missing (in the ACK), and while a pass ends with
  one of those names present on the source, another pass follows (at most
  six in all; past that the replication heals with a remirror, see
  :meth:`Replication.lost`).

Writes to one file are merged by its path; a file written through two hard
links at once should be reported under one of its names, or overlapping
writes through the two may be merged out of order."""
from __future__ import annotations

import io
import os
import threading
import time
from typing import Any, Callable, NamedTuple

from dtcore.control.events import emit
from dtcore.control.stats import ConState
from dtcore.errors import (
    DTError,
    InvalidParameterError,
    InvalidPathError,
    QueueClosedError,
    QueueLogFileError,
    TargetDiskFullError,
)
from dtcore.model import xattrs
from dtcore.model.ops import LINK_ROOTED, Attrs, Op, OpKind, pack_batch
from dtcore.model.paths import check_path
from dtcore.model.repset import ReplicationSet
from dtcore.protocol.messages import MIRROR_REQUIRED, OK
from dtcore.source.connection import Connection
from dtcore.source.pipeline import Pipeline, default_directory
from dtcore.source.rep_stream import ReplicationStream

# Replication Status words (the guide's replication service view)
REPLICATING, READY, PENDING, STOPPED, OUT_OF_MEMORY, FAILED = (
    "Replicating", "Ready", "Pending", "Stopped", "Out of Memory", "Failed")
_FLUSH_OPS = 4096
_FLUSH_BYTES = 1 << 20


class Missed(NamedTuple):
    """What :meth:`Replication.missed` found: names the target missed that
    the source has, whether more were reported than kept, and whether every
    op reported before the look was applied (else more may come)."""

    names: list[bytes]
    more: bool
    settled: bool


def missed_reason(names: list[bytes]) -> str:
    """Why the target needs a mirror when ``names`` (possibly none known) were missed."""
    first = f" (the first: {os.fsdecode(names[0])})" if names else ""
    return (f"ops sent during a mirror found names missing on the target that the "
            f"source has{first}")


def _op(kind: OpKind, path: bytes, arg: int = 0, data: bytes = b"") -> Op:
    # the file id groups a file's writes for the merge: the path's hash here
    # (a path is its file between namespace ops, which end every group)
    return Op(kind, hash(path) & 0x7FFF_FFFF_FFFF_FFFF, 0, path, arg, data)


class Replication:
    """A running replication of ``repset`` over ``conn``; made by
    ``Engine.replicate``.  Paths are relative to the set's root (or absolute
    beneath it), as ``str`` or ``bytes``."""

    def __init__(self, conn: Connection, repset: ReplicationSet, *, directory: str | None = None,
                 coalesce: float = 0.005) -> None:
        cfg = conn.config
        self.conn = conn
        self.repset = repset
        self._root = os.fsencode(repset.root).rstrip(b"/") + b"/"
        self.directory = directory or default_directory(cfg, repset, conn.host, conn.port,
                                                        conn.target_path)
        self.pipeline = Pipeline(self.directory, repset, cfg, conn.counters, conn.stats.server,
                                 f"replication of {repset.name} to {conn.host}: ")
        self.write_through = self.pipeline.write_through
        self.stream = ReplicationStream(self.pipeline, conn.counters)
        self.coalesce = coalesce
        self._pending: list[Op] = []
        self._pending_bytes = 0
        self._intake = threading.Lock()  # the pending list
        self._submit = threading.Lock()  # pending -> queue, in order
        self._stop = threading.Event()
        self._stopped = False
        self.error: BaseException | None = None
        self.needs_mirror = self.pipeline.state.may_have_lost or self.pipeline.lost
        self._lost_reason = ""  # set by lost(): heal at once, without waiting for a drain
        self._missed_mark: int | None = None  # see check_missed_after
        self.heals = 0  # remirrors asked for so far
        self.watcher: Any = None  # the file watcher feeding this replication, if any
        self.left = 0  # ops kept in the journal by close() for the next run
        # run once the queue drained after refused ops (Engine.replicate
        # gives a difference mirror per AutoRemirror)
        self.on_remirror: Callable[[], None] | None = None
        conn.tx.attach(self.stream)  # learns the target's state, if the link is up
        if self.stream.target_state not in ("", OK):
            self.needs_mirror = True
        self._threads = [threading.Thread(target=self._flusher, name="dtcore-intake", daemon=True),
                         threading.Thread(target=self._supervise, name="dtcore-supervisor",
                                          daemon=True)]
        for t in self._threads:
            t.start()
        emit(4024, conn=conn.label())

    # -- paths -----------------------------------------------------------------
    def _rel(self, path: str | bytes | os.PathLike[Any]) -> bytes:
        p = os.fsencode(path)
        if p.startswith(b"/"):
            if not p.startswith(self._root):
                raise InvalidPathError(f"{os.fsdecode(p)} is outside the replication set "
                                       f"{self.repset.root}")
            p = p[len(self._root):]
        p = p.strip(b"/")
        check_path(p)
        return p

    def local(self, path: str | bytes | os.PathLike[Any]) -> bytes:
        """The source file's own path for a replicated path."""
        return self._root + self._rel(path)

    # -- intake ------------------------------------------------------------------
    def _add(self, ops: list[Op]) -> None:
        """Take a call's ops; raises (and takes none of them) when they cannot
        be queued, such as a journal at QJournalSpaceMax."""
        if self._stopped:
            raise QueueClosedError("the replication is closed")
        size = sum(len(op[5]) for op in ops)
        with self._intake:
            self._pending.extend(ops)
            self._pending_bytes += size
            full = len(self._pending) >= _FLUSH_OPS or self._pending_bytes >= _FLUSH_BYTES
        if not (self.write_through or full or self.error is not None):
            return
        try:
            self.flush()
        except DTError as e:
            with self._intake:  # this call's ops are not taken
                first = ops[0]
                for i in range(len(self._pending) - 1, -1, -1):
                    if self._pending[i] is first:
                        del self._pending[i:i + len(ops)]
                        self._pending_bytes -= size
                        break
            self._rejected(e)
            raise

    def write(self, path: str | bytes, offset: int, data: Any) -> None:
        """``data`` was written at ``offset`` of the file."""
        self._add([_op(OpKind.WRITE, self._rel(path), offset, bytes(data))])

    def truncate(self, path: str | bytes, size: int) -> None:
        self._add([_op(OpKind.TRUNCATE, self._rel(path), size)])

    def create(self, path: str | bytes, mode: int = 0o644) -> None:
        """A new, empty file (an existing one is emptied)."""
        self._add([_op(OpKind.CREATE, self._rel(path), mode & 0o7777)])

    def mkdir(self, path: str | bytes, mode: int = 0o755) -> None:
        self._add([_op(OpKind.MKDIR, self._rel(path), mode & 0o7777)])

    def delete(self, path: str | bytes) -> None:
        """A file, link or special file was removed."""
        self._add([_op(OpKind.DELETE, self._rel(path))])

    def rmdir(self, path: str | bytes) -> None:
        self._add([_op(OpKind.RMDIR, self._rel(path))])

    def rename(self, old: str | bytes, new: str | bytes) -> None:
        """A file or a folder moved (one op, whatever the folder holds).  Into
        the set from a path its rules leave out, the file is sent whole."""
        o, n = self._rel(old), self._rel(new)
        if not self.pipeline.included(o) and self.pipeline.included(n):
            self._send_file(n)
            return
        self._add([_op(OpKind.RENAME, o, 0, n)])

    def setattr(self, path: str | bytes, *, mode: int | None = None, uid: int | None = None,
                gid: int | None = None, atime_ns: int | None = None,
                mtime_ns: int | None = None) -> None:
        """Attributes changed: give the ones that did (owner as uid and gid
        together, times as both)."""
        mask = 0
        if mode is not None:
            mask |= Attrs.MODE
        if uid is not None or gid is not None:
            if uid is None or gid is None:
                raise InvalidParameterError("setattr: give uid and gid together")
            mask |= Attrs.OWNER
        if atime_ns is not None or mtime_ns is not None:
            if atime_ns is None or mtime_ns is None:
                raise InvalidParameterError("setattr: give atime_ns and mtime_ns together")
            mask |= Attrs.TIMES
        if not mask:
            return
        attrs = Attrs(mask, mode or 0, uid or 0, gid or 0, atime_ns or 0, mtime_ns or 0)
        self._add([_op(OpKind.SETATTR, self._rel(path), 0, attrs.pack())])

    def setxattrs(self, path: str | bytes, attrs: dict[bytes, bytes]) -> None:
        """The entry's extended attributes are now ``attrs`` (the whole set:
        names missing from it are removed on the target)."""
        self._add([_op(OpKind.XATTR, self._rel(path), 0, xattrs.pack(attrs))])

    def symlink(self, path: str | bytes, text: str | bytes) -> None:
        """A symbolic link; an absolute one into the set is re-rooted on the
        target (``RemapLink``), as a mirror does."""
        t, flags = os.fsencode(text), 0
        if self.conn.config["RemapLink"] and t.startswith(self._root) and len(t) > len(self._root):
            t, flags = t[len(self._root):], LINK_ROOTED
        self._add([_op(OpKind.SYMLINK, self._rel(path), flags, t)])

    def link(self, path: str | bytes, existing: str | bytes) -> None:
        """A hard link ``path`` to the file at ``existing``."""
        e, p = self._rel(existing), self._rel(path)
        if not self.pipeline.included(e):
            self._send_file(p)
            return
        self._add([_op(OpKind.LINK, p, 0, e)])

    def submit(self, batch: Any) -> int:
        """A packed batch of ops (:func:`dtcore.model.ops.pack_batch`'s format),
        queued in one call after everything reported before it; returns its
        batch number.  Paths in it are relative to the set's root."""
        if self._stopped:
            raise QueueClosedError("the replication is closed")
        with self._submit:
            self._flush_locked()
            seq = self.pipeline.submit(batch)
        self.conn.tx.wake()
        return seq

    def _send_file(self, path: bytes) -> None:
        """The whole file at ``path`` as ops (it came from outside the set)."""
        local = self._root + path
        with open(local, "rb") as f:  # a MiB at a time: a large file is never held whole
            st = os.fstat(f.fileno())
            self._add([_op(OpKind.CREATE, path, st.st_mode & 0o7777)])
            offset = 0
            while chunk := f.read(1 << 20):
                self._add([_op(OpKind.WRITE, path, offset, chunk)])
                offset += len(chunk)
            if self.conn.config["ExtendedAttributes"]:
                self.setxattrs(path, xattrs.read(local))
        self._add([_op(OpKind.SETATTR, path, 0, Attrs.of(st).pack())])

    def open(self, path: str | bytes, mode: str = "r", buffering: int = -1,
             encoding: str | None = None, errors: str | None = None,
             newline: str | None = None) -> Any:
        """Open a file of the set like :func:`open`; what is written through
        the returned file is written to the source file and reported, and
        closing it reports the file's new times."""
        from dtcore.source.intake.files import ReplicatedRaw
        raw = ReplicatedRaw(self, self._rel(path), mode)
        if "b" in mode and buffering == 0:
            return raw
        size = io.DEFAULT_BUFFER_SIZE if buffering in (-1, 0, 1) else buffering
        if raw.readable() and raw.writable():
            buffered: Any = io.BufferedRandom(raw, size)
        elif raw.writable():
            buffered = io.BufferedWriter(raw, size)
        else:
            buffered = io.BufferedReader(raw, size)
        if "b" in mode:
            return buffered
        text = io.TextIOWrapper(buffered, encoding or "utf-8", errors, newline,
                                line_buffering=buffering == 1)
        text.mode = mode  # type: ignore[misc]
        return text

    # -- moving ops along ------------------------------------------------------------
    def flush(self) -> None:
        """Move what was reported into the queue now (durably with
        QLogWriteThrough); otherwise the intake does it within ``coalesce``."""
        with self._submit:
            moved = self._flush_locked()
        if moved:
            self.conn.tx.wake()

    def _flush_locked(self) -> bool:
        with self._intake:
            ops, size = self._pending, self._pending_bytes
            self._pending, self._pending_bytes = [], 0
        if not ops:
            return False
        try:
            self.pipeline.submit(pack_batch(ops))
        except BaseException:
            with self._intake:  # still accepted: they go with the next flush
                self._pending[:0] = ops
                self._pending_bytes += size
            raise
        self.error = None
        return True

    def _rejected(self, error: DTError) -> None:
        """Ops were refused: the target can no longer be brought in step
        by replication alone."""
        if self.error is None:
            emit(6002, detail=f"replication of {self.repset.name} refused ops: {error}; the "
                              "target is remirrored once the queue drains")
        self.error = error
        self.needs_mirror = True

    def _flusher(self) -> None:
        while not self._stop.wait(self.coalesce):
            if self._pending:
                try:
                    self.flush()
                except DTError as e:  # the queue is full: the next call says so
                    self.error = e
                    self._stop.wait(0.5)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every op reported so far is applied on the target;
        False when ``timeout`` seconds passed first.  With a watcher, what
        changed on disk before the call counts as reported."""
        if self.watcher is not None and self.watcher.running:
            self.watcher.flush(10 if timeout is None else timeout)
        self.flush()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.stream.pending():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        if self.watcher is not None:
            self.watcher.sync_root()
        return True

    def check_missed_after(self, seq: int) -> None:
        """Once batch ``seq`` is applied, look at the names the target
        reported missing once more, and heal if the source has any: ops sent
        during a mirror that were not applied when it ended report late."""
        self._missed_mark = seq

    def _late_missed(self) -> None:
        if self._missed_mark is None or self.stream.applied < self._missed_mark:
            return
        self._missed_mark = None
        seen = self.missed(0)
        if seen.names or seen.more:
            self.lost(missed_reason(seen.names))

    def missed(self, timeout: float) -> "Missed":
        """After waiting (up to ``timeout`` seconds) until every op reported
        so far is applied: the names the target reported missing since the
        last call (see :class:`~dtcore.protocol.messages.Ack`) that the
        source has."""
        self.flush()
        last = self.pipeline.state.last_seq()
        deadline = time.monotonic() + timeout
        while self.stream.applied < last and self.conn.alive and time.monotonic() < deadline:
            time.sleep(0.005)
        names, more = self.conn.tx.take_missed()
        root = os.fsencode(self.repset.root)
        here = []
        for name in sorted(names):
            try:
                check_path(name)
            except InvalidPathError:
                continue
            if os.path.lexists(os.path.join(root, name)):
                here.append(name)
        return Missed(here, more, self.stream.applied >= last)

    def idle(self) -> bool:
        """Whether every op reported so far is applied on the target."""
        return not self._pending and not self.stream.pending()

    def _supervise(self) -> None:
        """Reconnect a cut link (AutoReconnect); the stream resends on its own."""
        delay = 0.2
        while not self._stop.wait(0.1):
            if self._missed_mark is not None and not self.conn.tx.mirroring:
                self._late_missed()
            if self.conn.alive and self.needs_mirror and (self._lost_reason
                                                          or not self.stream.pending()):
                self._heal()
            if self.conn.alive or not self.conn.config["AutoReconnect"]:
                continue
            generation = self.conn.generation
            self.conn.stats.server.add("autoDisConnects")
            emit(4009, repset=self.conn.repset, target=self.conn.host,
                 address=f"{self.conn.host}:{self.conn.port}")
            while not self._stop.is_set():
                try:
                    self.conn.reconnect(generation)
                    if self.stream.target_state != OK:  # the new link told it
                        self.needs_mirror = True
                    self.conn.stats.server.add("autoReConnects")
                    emit(4010, repset=self.conn.repset, target=self.conn.host,
                         address=f"{self.conn.host}:{self.conn.port}")
                    delay = 0.2
                    break
                except DTError:
                    if self._stop.wait(delay):
                        return
                    delay = min(delay * 2, 5)

    def heal(self) -> None:
        """The target path becomes Mirror Required and is remirrored
        (``on_remirror``, per AutoRemirror): at the start when the target is
        not in step, and after refused ops once everything queued is applied."""
        self.conn.set_state(MIRROR_REQUIRED, self._why_mirror())
        self.heals += 1
        # cleared before the remirror, not after: changes lost while it runs
        # (the watcher's queue overflowing again) ask for another one
        self._lost_reason = ""
        self.needs_mirror = False
        try:
            if self.on_remirror is not None:
                self.on_remirror()
        except BaseException:
            self.needs_mirror = True
            raise
        self.error = None

    def lost(self, reason: str) -> None:
        """Changes were missed (the watcher lost events): the target is
        marked Mirror Required and remirrored as soon as the link allows,
        while replication goes on (see the mirror rule above)."""
        self._lost_reason = reason
        self.needs_mirror = True

    def watch(self, method: str = "auto", coalesce: float = 0.02, *,
              unlimited: bool = True) -> Any:
        """Capture the set's changes from the file system (fanotify, else
        inotify: ``method``) and replicate them; see
        :mod:`dtcore.source.intake.watcher`.  Start it before the initial
        mirror so that nothing changed during the mirror is missed.
        ``unlimited`` lifts fanotify's event queue limit (the kernel's
        max_queued_events; past it, events are lost and a remirror heals)."""
        from dtcore.source.intake.watcher import Watcher
        if self.watcher is None:
            self.watcher = Watcher(self, method=method, coalesce=coalesce, unlimited=unlimited)
            self.stream.tolerant = True
        return self.watcher

    def _why_mirror(self) -> str:
        if self._lost_reason:
            return self._lost_reason
        if self.error is not None:
            return "replication refused ops"
        if self.pipeline.state.may_have_lost or self.pipeline.lost:
            return "the replication may have lost ops"
        return "not in step"

    def _heal(self) -> None:
        try:
            self.heal()
        except DTError as e:
            emit(6002, detail=f"replication of {self.repset.name}: the remirror failed: {e}")

    # -- state ---------------------------------------------------------------------
    @property
    def status(self) -> str:
        """The Replication Status word."""
        if self._stopped:
            return STOPPED
        if self.watcher is not None and self.watcher.error is not None:
            return FAILED
        if self.error is not None:
            return OUT_OF_MEMORY if isinstance(self.error, (QueueLogFileError, TargetDiskFullError)) \
                else FAILED
        if not self.conn.alive:
            return PENDING
        return REPLICATING if self._pending or self.stream.pending() else READY

    def recovery_point(self) -> tuple[float, float]:
        """(ConRPT: the time up to which the target has every op, as seconds
        since the epoch; ConRPL: how many seconds the target is behind)."""
        return self.pipeline.recovery_point()

    def statistics(self) -> dict[str, Any]:
        """Queue, window, recovery point and merge figures of this replication."""
        rpt, rpl = self.recovery_point()
        out: dict[str, Any] = dict(self.stream.counts())
        out.update(status=self.status, ConRPT=rpt, ConRPL=rpl,
                   applied=self.stream.applied, merge=self.pipeline.savings.as_dict())
        if self.watcher is not None:
            out["watcher"] = self.watcher.statistics()
        return out

    def close(self, timeout: float = 30) -> bool:
        """Stop: wait up to ``timeout`` seconds for the target to apply what
        is queued, then keep the rest in the journal for the next run.
        Returns whether everything was applied (event 4025)."""
        if self._stopped:
            return True
        drained = False
        if self.watcher is not None:  # what it saw so far goes, then no more
            if self.conn.alive:
                self.watcher.flush(min(timeout, 10))
            self.watcher.close()
        try:
            drained = self.drain(timeout) if self.conn.alive else False
        except DTError:
            pass
        self._stopped = True
        self._stop.set()
        for t in self._threads:
            t.join(5)
        try:
            with self._submit:
                self._flush_locked()
        except DTError:
            pass
        self.conn.tx.detach()
        c = self.stream.counts()
        self.left = c["conOpsInRepQueue"] + c["conOpsInAckQueue"]
        self.stream.close()
        emit(4025, conn=self.conn.label())
        if not self.conn.alive:
            self.conn.counters["conState"] = int(ConState.ERROR)
        return drained

    def __enter__(self) -> "Replication":
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        self.close(0 if kind is KeyboardInterrupt else 30)

