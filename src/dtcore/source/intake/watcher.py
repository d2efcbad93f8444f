"""Change capture from the file system into a :class:`Replication`: the
watcher reads the kernel's events (fanotify, else inotify) and reports the
ops they stand for.

- Names (create, mkdir, delete, rmdir, rename, symlink, hard link) are
  reported at once, in event order; a folder rename is one op.
- Data: a file the events say changed is compared with its last known block
  checksums (``blocksums``), rehashed in C, and only the blocks that differ
  go, with the new size; its times, mode and owner follow.  A file is taken
  once writes to it paused for ``coalesce`` seconds, when it was closed, or
  at the latest ``4 * coalesce`` after its first change, and a large file no
  more often than its rehash time allows (see ``FileSums.due``).
- A file the watcher knows no checksums of (it existed before and was not
  touched since) is compared with the target's own block checksums once the
  initial mirror is over.
- Lost events (queue overflow, a watch lost) mark the target Mirror Required
  and the replication heals it with a difference mirror (AutoRemirror); a
  watcher that hears nothing while the set's folders change says so (event
  4067) and does the same."""
from __future__ import annotations

import math
import os
import select
import stat
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from dtcore.control.events import emit
from dtcore.errors import DTError, InvalidParameterError
from dtcore.model import xattrs
from dtcore.source.intake.blocksums import FileSums
from dtcore.source.intake.changes import Change, Kind

if TYPE_CHECKING:
    from dtcore.source.replication import Replication

METHODS = ("auto", "fanotify", "inotify")
_PROBE = 60.0  # seconds of silence before the watcher checks it is still hearing
_SUMS_PER_REQUEST = 16384
_GATHER = 0.002  # seconds events may gather before a read
# files whose checksums are kept; past it the least recently changed are
# forgotten (and compared with the target's own checksums when they change)
KEEP_FILES = 100_000
_LINK_SEARCH = 200_000  # entries listed to find another name of a hard-linked file


def open_watch(method: str, root: bytes, *, unlimited: bool = True) -> Any:
    """The kernel interface ``method`` names; "auto" takes fanotify when this
    process may use it and inotify otherwise."""
    if method not in METHODS:
        raise InvalidParameterError(f"watch method {method!r}: use one of {', '.join(METHODS)}")
    if method in ("auto", "fanotify"):
        from dtcore.source.intake.fanotify import FanotifyWatch
        try:
            return FanotifyWatch(root, unlimited=unlimited)
        except DTError:  # refused (AccessDeniedError) or unsupported here
            if method == "fanotify":
                raise
    from dtcore.source.intake.inotify import InotifyWatch
    return InotifyWatch(root)


class Watcher:
    """Watches ``rep``'s replication set and reports what changes in it.
    Made by ``Engine.replicate(..., watch=...)``; start it before the
    initial mirror so that nothing changed during the mirror is missed."""

    def __init__(self, rep: Replication, *, method: str = "auto", coalesce: float = 0.02,
                 unlimited: bool = True) -> None:
        self.rep = rep
        self.root = os.fsencode(rep.repset.root).rstrip(b"/")
        self._prefix = self.root + b"/"
        self._xattrs = bool(rep.conn.config["ExtendedAttributes"])
        self.coalesce = coalesce
        self.watch = open_watch(method, self.root, unlimited=unlimited)
        self.method = self.watch.name
        self.files: dict[bytes, FileSums] = {}
        self._attrs: dict[bytes, float] = {}  # path -> when its attributes changed
        self._dirty: set[bytes] = set()  # paths of files whose data changed
        # names of files made while watching, by inode: a new name of one is a hard link
        self._inodes: dict[tuple[int, int], list[bytes]] = {}
        self._root_dirty = False  # the set's own folder times, sent when the queue is empty
        self.counts: Counter[str] = Counter()
        self._heals = rep.heals
        self._last_event = time.time()
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()
        self._flush_requests: list[threading.Event] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dtcore-watcher", daemon=True)
        self._thread.start()

    # -- the loop -------------------------------------------------------------------
    def _run(self) -> None:
        poll = select.poll()
        poll.register(self.watch.fileno(), select.POLLIN)
        # events are read as they come; files are looked at twice per
        # coalescing period, and what a look reports goes as one batch
        tick = max(0.001, self.coalesce / 2)
        next_probe = time.monotonic() + _PROBE
        next_settle = 0.0
        try:
            while not self._stop.is_set():
                wait_ms = max(0, math.ceil((next_settle - time.monotonic()) * 1000))
                if poll.poll(wait_ms):
                    # a moment for more to queue (the kernel merges repeats),
                    # so that a stream of writes costs a read per few events
                    self._stop.wait(_GATHER)
                    self._take(self.watch.read())
                with self._flush_lock:
                    flushing, self._flush_requests = self._flush_requests, []
                if flushing:  # everything queued in the kernel first
                    while batch := self.watch.read():
                        self._take(batch)
                now = time.monotonic()
                if not flushing and now < next_settle:
                    continue
                next_settle = now + tick
                if self.rep.heals != self._heals:  # a remirror changed the target
                    self._heals = self.rep.heals
                    for f in self.files.values():
                        f.forget()
                self._settle(now, 0.0 if flushing else self.coalesce)
                self.rep.flush()
                for done in flushing:
                    done.set()
                if time.monotonic() >= next_probe:
                    self._probe()
                    next_probe = time.monotonic() + _PROBE
        except BaseException as e:  # the replication reports it (status Failed)
            self.error = e
            emit(6002, detail=f"the file watcher of {self.rep.repset.name} stopped: {e}")

    def _take(self, changes: list[Change]) -> None:
        if not changes:
            return
        self._last_event = time.time()
        for c in changes:
            self.counts["events"] += 1
            try:
                self._change(c)
            except DTError as e:  # refused by the queue: the replication heals later
                self.counts["refused"] += 1
                self.rep.error = self.rep.error or e

    def flush(self, timeout: float = 5.0) -> bool:
        """Report every change that happened before this call now, without
        waiting for writes to settle; False if that took longer than
        ``timeout`` seconds."""
        done = threading.Event()
        with self._flush_lock:
            self._flush_requests.append(done)
        return done.wait(timeout)

    # -- paths ------------------------------------------------------------------------
    def _rel(self, path: bytes) -> bytes | None:
        if not path.startswith(self._prefix):
            return None
        rel = path[len(self._prefix):]
        return rel if rel and self.rep.pipeline.included(rel) else None

    def _touch_parent(self, rel: bytes) -> None:
        """An entry of ``rel``'s folder changed: the folder's times did too."""
        parent = rel.rpartition(b"/")[0]
        if parent:
            self._attrs.setdefault(parent, time.monotonic())
        else:
            self._root_dirty = True

    def _move_state(self, old: bytes, new: bytes, is_dir: bool) -> None:
        """What the watcher keeps of ``old`` (and, for a folder, of what it
        holds) now belongs to ``new``."""
        if not is_dir:  # one entry: no scan of everything kept
            for table in (self.files, self._attrs):
                if old in table:
                    table[new] = table.pop(old)  # type: ignore[index]
                else:
                    table.pop(new, None)  # type: ignore[attr-defined]
            if old in self._dirty:
                self._dirty.discard(old)
                self._dirty.add(new)
            try:
                st = os.lstat(self._prefix + new)
                names = self._inodes.get((st.st_dev, st.st_ino), [])
            except OSError:
                names = []
            names[:] = [new if n == old else n for n in names]
            return
        pre = old + b"/"
        for table in (self.files, self._attrs):
            for k in [k for k in table if k == old or k.startswith(pre)]:
                table[new + k[len(old):]] = table.pop(k)  # type: ignore[index]
        for k in [k for k in self._dirty if k == old or k.startswith(pre)]:
            self._dirty.discard(k)
            self._dirty.add(new + k[len(old):])
        for names in self._inodes.values():
            for i, p in enumerate(names):
                if p == old or p.startswith(pre):
                    names[i] = new + p[len(old):]

    def _drop_state(self, rel: bytes, is_dir: bool) -> None:
        if not is_dir:
            self.files.pop(rel, None)
            self._attrs.pop(rel, None)
            self._dirty.discard(rel)
            return
        pre = rel + b"/"
        for table in (self.files, self._attrs):
            for k in [k for k in table if k == rel or k.startswith(pre)]:
                del table[k]  # type: ignore[attr-defined]
        self._dirty.difference_update([k for k in self._dirty if k == rel or k.startswith(pre)])

    # -- events to ops ----------------------------------------------------------------
    def _change(self, c: Change) -> None:
        kind = c.kind
        if kind == Kind.OVERFLOW or kind == Kind.IGNORED:
            self._lost("the file watcher lost events (its event queue overflowed)"
                       if kind == Kind.OVERFLOW else
                       f"the file watcher lost sight of {os.fsdecode(c.path)}")
            return
        if kind == Kind.MOVE:
            self._move(c)
            return
        rel = self._rel(c.path)
        if rel is None:
            return
        rep = self.rep
        if kind == Kind.CREATE or kind == Kind.MOVE_IN:
            self._created(c, rel, tree=kind == Kind.MOVE_IN)
        elif kind == Kind.DELETE:
            (rep.rmdir if c.is_dir else rep.delete)(rel)
            self._drop_state(rel, c.is_dir)
            self._touch_parent(rel)
        elif kind in (Kind.MODIFY, Kind.CLOSED):
            if c.is_dir:
                return
            f = self.files.pop(rel, None)  # re-inserted: the dict runs least recent first
            if f is None:
                f = FileSums(c.obj)
            self.files[rel] = f
            f.changed(time.monotonic(), closed=kind == Kind.CLOSED)
            self._dirty.add(rel)
            if c.obj is not None:
                f.obj = c.obj
        elif kind == Kind.ATTRIB:
            self._attrs.setdefault(rel, time.monotonic())

    def _move(self, c: Change) -> None:
        old = self._rel(c.path)
        new = self._rel(c.new) if c.new is not None else None
        if old is not None and new is not None:
            self.rep.rename(old, new)
            self._move_state(old, new, c.is_dir)
            self._touch_parent(old)
            self._touch_parent(new)
            if c.is_dir:  # its ".." entry changed, and with it its times
                self._attrs.setdefault(new, time.monotonic())
        elif old is not None:  # out of the set: gone, whatever it held
            (self.rep.rmdir if c.is_dir else self.rep.delete)(old)
            self._drop_state(old, c.is_dir)
            self._touch_parent(old)
        elif new is not None and c.new is not None:  # in from outside: sent whole
            self._created(c._replace(path=c.new), new, tree=True)

    def _inspect(self, c: Change) -> tuple[os.stat_result, bytes | None] | None:
        """What the created object is now: by its path while the path still
        names it, else through its handle; None when it is gone."""
        path = c.path
        try:
            if c.obj is None or self.watch.same(c.obj, path):
                st = os.lstat(path)
                return st, os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
        except OSError:
            pass
        fd = self.watch.open(c.obj, path, os.O_PATH) if c.obj is not None else None
        if fd is None:
            return None
        try:
            st = os.fstat(fd)
            return st, os.readlink("", dir_fd=fd) if stat.S_ISLNK(st.st_mode) else None
        except OSError:
            return None
        finally:
            os.close(fd)

    def _created(self, c: Change, rel: bytes, tree: bool) -> None:
        rep = self.rep
        self._touch_parent(rel)
        found = self._inspect(c)
        if found is None:
            # gone from this name already: the name is still made, and the
            # event that moved or removed it follows; a file's data is sent
            # under the name it has then
            if c.is_dir:
                rep.mkdir(rel)
            else:
                rep.create(rel)
                self._new_file(rel, c.obj)
            return
        st, text = found
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            rep.mkdir(rel, mode & 0o7777)
            self._attrs.setdefault(rel, time.monotonic())
            if tree:
                self._tree(c.path, rel)
        elif stat.S_ISLNK(mode):
            assert text is not None
            rep.symlink(rel, text)
            self._attrs.setdefault(rel, time.monotonic())
        elif stat.S_ISREG(mode):
            ino = (st.st_dev, st.st_ino)
            names = self._inodes.get(ino, []) if st.st_nlink > 1 else []
            names[:] = [n for n in names if n != rel and self._same_inode(n, ino)]
            if st.st_nlink > 1 and not names:
                names = self._other_name(rel, ino)
            if names:
                rep.link(rel, names[0])
                self._inodes[ino] = [*names, rel]
                return
            if len(self._inodes) >= 1 << 20:
                self._inodes.clear()
            self._inodes[ino] = [rel]
            rep.create(rel, mode & 0o7777)
            self._new_file(rel, c.obj)
        else:
            self.counts["skipped special files"] += 1

    def _other_name(self, rel: bytes, ino: tuple[int, int]) -> list[bytes]:
        """Another name of a file that existed before watching began, found
        by listing the set (folder entries carry inode numbers, so no file
        is stat'ed); past _LINK_SEARCH entries it is sent as a copy."""
        seen = 0
        stack = [self.root]
        while stack and seen < _LINK_SEARCH:
            try:
                it = os.scandir(stack.pop())
            except OSError:
                continue
            with it:
                for e in it:
                    seen += 1
                    if e.is_dir(follow_symlinks=False):
                        stack.append(os.fsencode(e.path))
                    elif e.inode() == ino[1]:
                        other = self._rel(os.fsencode(e.path))
                        if other is not None and other != rel and self._same_inode(other, ino):
                            return [other]
        self.counts["hard links sent as copies"] += 1
        return []

    def _new_file(self, rel: bytes, obj: Any) -> None:
        """A file just made empty on the target: its data is to be sent."""
        f = self.files[rel] = FileSums(obj, known_empty=True)
        f.changed(time.monotonic(), closed=False)
        self._dirty.add(rel)

    def _same_inode(self, rel: bytes, ino: tuple[int, int]) -> bool:
        try:
            st = os.lstat(self._prefix + rel)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == ino

    def _tree(self, top: bytes, rel_top: bytes) -> None:
        """Everything beneath a folder that came in from outside the set."""
        for dirpath, dirnames, filenames in os.walk(top):
            base = os.fsencode(dirpath)
            for name in [*dirnames, *filenames]:
                p = os.path.join(base, os.fsencode(name))
                rel = self._rel(p)
                if rel is not None:
                    self._created(Change(Kind.CREATE, p, None, os.path.isdir(p)), rel, tree=False)

    # -- data and attributes ----------------------------------------------------------
    def _settle(self, now: float, wait: float) -> None:
        for rel in list(self._dirty):
            f = self.files.get(rel)
            if f is not None and f.due(now, wait):
                self._send_data(rel, f, now)
            if f is None or not f.dirty:
                self._dirty.discard(rel)
        if len(self.files) > KEEP_FILES:
            self._forget_oldest()
        for rel, when in list(self._attrs.items()):
            if now - when >= wait:
                del self._attrs[rel]
                self._send_attrs(rel)
        if self._root_dirty and self.rep.idle() and self.rep.conn.alive:
            self.sync_root()

    def _forget_oldest(self) -> None:
        """Bounded memory: drop the checksums of the least recently changed
        files that wait for nothing, down to nine tenths of KEEP_FILES."""
        excess = len(self.files) - KEEP_FILES * 9 // 10
        for rel in list(self.files):
            if excess <= 0:
                break
            if rel not in self._dirty:
                del self.files[rel]
                excess -= 1
                self.counts["checksums forgotten"] += 1

    def sync_root(self) -> None:
        """Give the set's own folder its times on the target, once every op
        that could move them is applied (the call goes beside the ops)."""
        if not self._root_dirty:
            return
        self._root_dirty = False
        try:
            self.rep.conn.set_root_attrs(self.root)
        except DTError:
            self._root_dirty = True  # the link fell: again once it is back

    def _send_data(self, rel: bytes, f: FileSums, now: float) -> None:
        path = self._prefix + rel
        fd = self.watch.open(f.obj, path)
        if fd is None:  # renamed or removed: the events that say so follow
            f.missed(now)
            return
        try:
            self._compare(rel, f, fd, now)
        except DTError:
            if self.rep.error is not None:
                raise  # the queue refused the ops
            # cut short (the file shrank, the link fell): again later; a
            # lasting cause shows in the replication's status
            f.later(now, 0.1)
            self.counts["retried"] += 1
        except OSError as e:  # the file cannot be read (EIO and the like): again later
            self.rep.conn.stats.server.add("FailedRepCount")
            emit(6001, detail=f"replication could not read {os.fsdecode(rel)}: "
                              f"{e.strerror or e}; trying again")
            f.later(now, 1.0)
        finally:
            os.close(fd)

    def _compare(self, rel: bytes, f: FileSums, fd: int, now: float) -> None:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            f.missed(now)
            return
        if not f.known:
            if self.rep.conn.tx.mirroring or not self.rep.conn.alive:
                f.later(now, 0.1)  # the mirror brings the file; compare after it
                return
            f.learn(self._target_sums(rel, fd, f.block_for(st.st_size)))
        self.counts["files rehashed"] += 1
        for op in f.diff(fd, st.st_size, now):
            if op[0] == "truncate":
                self.rep.truncate(rel, op[1])
            else:
                self.rep.write(rel, op[1], op[2])
                self.counts["bytes sent"] += len(op[2])
        self.counts["bytes rehashed"] += st.st_size
        self._attrs.pop(rel, None)
        self._report_attrs(rel, os.fstat(fd))

    def _target_sums(self, rel: bytes, fd: int, block: int) -> tuple[int, int, Any]:
        """(block, the target copy's size or -1, its block checksums)."""
        parts, size = [], -1
        conn = self.rep.conn
        length = os.fstat(fd).st_size
        for _first, reply, sums in conn.block_sums(rel, length, block, _SUMS_PER_REQUEST):
            size = reply.size
            parts.append(sums)
        return block, size, np.concatenate(parts) if parts else np.zeros(0, np.uint64)

    def _send_attrs(self, rel: bytes) -> None:
        try:
            st = os.lstat(self._prefix + rel)
        except OSError:
            return  # gone: its removal is reported
        self._report_attrs(rel, st)

    def _report_attrs(self, rel: bytes, st: os.stat_result) -> None:
        if self._xattrs:
            try:
                self.rep.setxattrs(rel, xattrs.read(self._prefix + rel))
            except OSError:
                pass  # gone: its removal is reported
        self.rep.setattr(rel, mode=None if stat.S_ISLNK(st.st_mode) else st.st_mode & 0o7777,
                         uid=st.st_uid, gid=st.st_gid, atime_ns=st.st_atime_ns,
                         mtime_ns=st.st_mtime_ns)

    # -- losing events ----------------------------------------------------------------
    def _lost(self, reason: str) -> None:
        self.counts["overflows"] += 1
        for f in self.files.values():
            f.forget()
        self._attrs.clear()
        self.rep.lost(reason)

    def _probe(self) -> None:
        """Silence for a long time: check the set's folders did not change
        behind the watcher's back (event 4067 when they did)."""
        if time.time() - self._last_event < _PROBE:
            return
        newest = 0
        try:
            with os.scandir(self.root) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        newest = max(newest, e.stat(follow_symlinks=False).st_mtime_ns)
            newest = max(newest, os.stat(self.root).st_mtime_ns)
        except OSError:
            return
        if newest > (self._last_event + 1) * 1e9:
            emit(4067)
            self._lost("the file watcher heard nothing while the set changed")
            self._last_event = time.time()

    # -- state ------------------------------------------------------------------------------
    def statistics(self) -> dict[str, Any]:
        """What the watcher saw and did: how it watches, events, files rehashed, bytes rehashed
        and sent, special files skipped, overflows."""
        return {"watch": self.method, **self.counts}

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop watching (changes not yet reported are not reported)."""
        self._stop.set()
        self._thread.join(10)
        self.watch.close()

