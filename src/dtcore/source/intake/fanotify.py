"""Change capture with fanotify: one filesystem mark per file system under
the root, events named by folder handle and entry name, the object's own
handle beside them (csrc/dt_fanotify.c; no maintained Python binding
covers FAN_REPORT_DFID_NAME and FAN_RENAME).

Folder handles are turned into paths through a map kept in event order:
primed by a walk of the folders at start, extended by each folder created,
moved by each folder renamed.  A path is therefore the one the folder had
when the event happened, not after later renames still in the queue.
File data is read through the file's handle, so a file renamed (or
renamed over) before its change is read is still the right file."""
from __future__ import annotations

import errno
import os
import time

from dtcore._native import _fanotify
from dtcore.errors import AccessDeniedError, DTError, FileAccessError, WatchLimitError
from dtcore.source.intake.changes import Change, Kind

FAN_MODIFY, FAN_ATTRIB, FAN_CLOSE_WRITE = 0x2, 0x4, 0x8
FAN_CREATE, FAN_DELETE, FAN_Q_OVERFLOW = 0x100, 0x200, 0x4000
FAN_RENAME, FAN_ONDIR = 0x10000000, 0x40000000
MASK = FAN_MODIFY | FAN_ATTRIB | FAN_CLOSE_WRITE | FAN_CREATE | FAN_DELETE | FAN_RENAME | FAN_ONDIR
_READ = 1 << 18
_OUTSIDE_MAX = 8192  # resolved folders outside the root kept for reuse


class FanotifyWatch:
    """Watches everything beneath ``root`` (absolute, bytes)."""

    name = "fanotify"

    def __init__(self, root: bytes, *, unlimited: bool = True) -> None:
        self.root = root.rstrip(b"/") or b"/"
        self._prefix = self.root + b"/"
        try:
            self.fd = _fanotify.init(unlimited)
        except FileAccessError as e:
            if e.errno in (errno.EPERM, errno.EACCES):
                raise AccessDeniedError("fanotify needs CAP_SYS_ADMIN (run as root, or watch "
                                        "with inotify)") from e
            raise
        self._mounts: dict[bytes, int] = {}  # file system id -> a descriptor on it
        self.dirs: dict[bytes, bytes] = {}  # folder key -> path, inside the root
        self._outside: dict[bytes, bytes] = {}
        try:
            self._prime()
        except BaseException:
            self.close()
            raise

    def fileno(self) -> int:
        return self.fd

    def _mark(self, path: bytes) -> None:
        key = _fanotify.key(path)
        if key[:8] in self._mounts:
            return
        try:
            _fanotify.mark(self.fd, path, MASK)
        except FileAccessError as e:
            if e.errno in (errno.ENOSPC, errno.EMFILE):
                raise WatchLimitError(f"fanotify refused a mark on {os.fsdecode(path)}: the "
                                      "limit of marks is reached (fs.fanotify.max_user_marks)") from e
            raise
        self._mounts[key[:8]] = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def _prime(self) -> None:
        """Mark the root's file system (and any mounted beneath it) and learn
        every folder's handle."""
        self._mark(self.root)
        dev = os.stat(self.root).st_dev
        stack = [self.root]
        while stack:
            path = stack.pop()
            try:
                self.dirs[_fanotify.key(path)] = path
                entries = os.scandir(path)
            except (FileNotFoundError, NotADirectoryError, DTError):
                continue  # removed while walking: its events say so
            with entries:
                for e in entries:
                    if e.is_dir(follow_symlinks=False):
                        p = os.fsencode(e.path)
                        if e.stat(follow_symlinks=False).st_dev != dev:
                            self._mark(p)
                        stack.append(p)

    # -- resolving handles ------------------------------------------------------
    def _mount(self, key: bytes) -> int | None:
        return self._mounts.get(key[:8])

    def _dir(self, key: bytes) -> bytes | None:
        path = self.dirs.get(key)
        if path is not None:
            return path
        path = self._outside.get(key)
        if path is not None:
            return path
        mfd = self._mount(key)
        if mfd is None:
            return None
        path = self._handle_path(mfd, key)
        if path is None or path.endswith(b" (deleted)"):
            return None
        if self._inside(path):
            self.dirs[key] = path
        else:
            if len(self._outside) >= _OUTSIDE_MAX:
                self._outside.clear()
            self._outside[key] = path
        return path

    @staticmethod
    def _handle_path(mfd: int, key: bytes) -> bytes | None:
        # the kernel can fail to decode a handle for want of memory for a
        # moment (ENOMEM, seen once under heavy page-cache churn): try again
        # briefly before the watcher gives up
        for attempt in range(3):
            try:
                return _fanotify.path(mfd, key)
            except FileAccessError as e:
                if e.errno != errno.ENOMEM or attempt == 2:
                    raise
                time.sleep(0.01 * (attempt + 1))
        return None

    def _inside(self, path: bytes) -> bool:
        return path == self.root or path.startswith(self._prefix)

    def _moved(self, old: bytes, new: bytes) -> None:
        """A folder renamed: every folder path beneath it moves with it."""
        pre = old + b"/"
        for k, p in self.dirs.items():
            if p == old or p.startswith(pre):
                self.dirs[k] = new + p[len(old):]
        self._outside.clear()
        for k in [k for k, p in self.dirs.items() if not self._inside(p)]:
            del self.dirs[k]

    def _removed(self, path: bytes) -> None:
        pre = path + b"/"
        for k in [k for k, p in self.dirs.items() if p == path or p.startswith(pre)]:
            del self.dirs[k]

    def open(self, obj: bytes | None, path: bytes, flags: int = os.O_RDONLY) -> int | None:
        """A descriptor of the object (through its handle), or None when it
        is gone."""
        mfd = self._mount(obj) if obj is not None else None
        if obj is None or mfd is None:
            try:
                return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
            except OSError:
                return None
        try:
            return _fanotify.open(mfd, obj, flags)
        except FileAccessError:
            return None

    def same(self, obj: bytes | None, path: bytes) -> bool:
        """Whether ``path`` names the object ``obj`` now."""
        try:
            return obj is not None and _fanotify.key(path) == obj
        except DTError:
            return False

    # -- events ------------------------------------------------------------------
    def read(self) -> list[Change]:
        """The changes of what the group has queued (none when it is empty)."""
        try:
            buf = os.read(self.fd, _READ)
        except BlockingIOError:
            return []
        out: list[Change] = []
        for mask, _pid, dkey, name, d2key, name2, obj in _fanotify.parse(buf):
            if mask & FAN_Q_OVERFLOW:
                out.append(Change(Kind.OVERFLOW, self.root))
                continue
            if dkey is None:
                continue
            parent = self._dir(dkey)
            if parent is None:
                continue
            is_dir = bool(mask & FAN_ONDIR)
            path = parent if name == b"." else parent + b"/" + name
            if mask & FAN_RENAME:
                new_parent = self._dir(d2key) if d2key is not None else None
                new = None if new_parent is None else new_parent + b"/" + name2
                self._rename(out, path, new, is_dir, obj)
                continue
            inside = self._inside(path)
            if mask & FAN_CREATE and mask & FAN_DELETE:
                # one object made and removed under one name (merged by the
                # kernel): what is there now decides
                if not self.same(obj, path):
                    if inside:
                        out.append(Change(Kind.DELETE, path, None, is_dir, obj))
                    continue
                mask &= ~FAN_DELETE
            if mask & FAN_CREATE:
                if is_dir and obj is not None and inside:
                    self.dirs[obj] = path
                if inside:
                    out.append(Change(Kind.CREATE, path, None, is_dir, obj))
            if not inside:
                continue
            if mask & FAN_MODIFY:
                out.append(Change(Kind.MODIFY, path, None, is_dir, obj))
            if mask & FAN_ATTRIB:
                out.append(Change(Kind.ATTRIB, path, None, is_dir, obj))
            if mask & FAN_CLOSE_WRITE:
                out.append(Change(Kind.CLOSED, path, None, is_dir, obj))
            if mask & FAN_DELETE:
                out.append(Change(Kind.DELETE, path, None, is_dir, obj))
                if is_dir:
                    self._removed(path)
        return out

    def _rename(self, out: list[Change], old: bytes, new: bytes | None, is_dir: bool,
                obj: bytes | None) -> None:
        was_in = self._inside(old)
        now_in = new is not None and self._inside(new)
        if is_dir and new is not None:
            self._moved(old, new)
            if now_in and obj is not None:
                self.dirs[obj] = new
        if was_in and now_in:
            out.append(Change(Kind.MOVE, old, new, is_dir, obj))
        elif was_in:
            out.append(Change(Kind.MOVE, old, None, is_dir, obj))
        elif now_in:
            assert new is not None
            if is_dir:
                self._learn(new)
            out.append(Change(Kind.MOVE_IN, new, None, is_dir, obj))

    def _learn(self, top: bytes) -> None:
        """Folders of a tree that came in from outside the root."""
        stack = [top]
        while stack:
            path = stack.pop()
            try:
                self.dirs[_fanotify.key(path)] = path
                with os.scandir(path) as it:
                    stack.extend(os.fsencode(e.path) for e in it if e.is_dir(follow_symlinks=False))
            except (OSError, DTError):
                continue

    def close(self) -> None:
        for fd in self._mounts.values():
            os.close(fd)
        self._mounts.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def available() -> bool:
    """Whether this process may use fanotify filesystem marks."""
    try:
        fd = _fanotify.init(False)
    except DTError:
        return False
    os.close(fd)
    return True

