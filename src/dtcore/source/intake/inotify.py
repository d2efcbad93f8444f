"""Change capture with inotify (through inotify_simple), for when fanotify
is refused: a watch per folder, renames paired by cookie.  A folder created
or moved in is watched and then listed, so entries made before its watch
took hold are reported too (some twice, which the ops tolerate)."""
from __future__ import annotations

import errno
import os
import select

from inotify_simple import INotify
from inotify_simple import flags as F

from dtcore.errors import WatchLimitError
from dtcore.source.intake.changes import Change, Kind

MASK = (F.CREATE | F.DELETE | F.MOVED_FROM | F.MOVED_TO | F.MODIFY | F.CLOSE_WRITE | F.ATTRIB
        | F.DELETE_SELF | F.DONT_FOLLOW | F.ONLYDIR | F.EXCL_UNLINK)
_PAIR_WAIT = 0.005  # how long a lone moved-from waits for its moved-to


def _limit() -> str:
    try:
        with open("/proc/sys/fs/inotify/max_user_watches") as f:
            return f.read().strip()
    except OSError:
        return "?"


class InotifyWatch:
    """Watches every folder beneath ``root`` (absolute, bytes)."""

    name = "inotify"

    def __init__(self, root: bytes) -> None:
        self.root = root.rstrip(b"/") or b"/"
        self._prefix = self.root + b"/"
        self._ino = INotify()
        self.fd = self._ino.fileno()
        self.wds: dict[int, bytes] = {}
        self._by_path: dict[bytes, int] = {}
        self._moves: dict[int, tuple[bytes, bool]] = {}  # cookie -> (old path, is_dir)
        self._found: list[Change] = []
        self._unlisted: set[bytes] = set()  # watched folders whose listing failed
        try:
            self._watch_tree(self.root, report=False)
        except BaseException:
            self.close()
            raise

    def fileno(self) -> int:
        return self.fd

    def _watch(self, path: bytes) -> bool:
        try:
            wd = self._ino.add_watch(path, MASK)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise WatchLimitError(
                    f"inotify watch limit reached at {os.fsdecode(path)} "
                    f"(fs.inotify.max_user_watches = {_limit()}); raise it with sysctl, or "
                    "watch with fanotify as root") from e
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return False  # gone already: its removal is reported
            raise
        self.wds[wd] = path
        self._by_path[path] = wd
        return True

    def _watch_tree(self, top: bytes, report: bool) -> None:
        """Watch ``top`` and every folder beneath; with ``report``, every
        entry found is reported as created (after its folder's watch, so
        nothing made meanwhile is missed)."""
        stack = [top]
        while stack:
            path = stack.pop()
            if not self._watch(path):
                continue
            try:
                it = os.scandir(path)
            except OSError:  # moved away meanwhile: listed when its move is seen
                self._unlisted.add(path)
                continue
            with it:
                for e in it:
                    p = os.fsencode(e.path)
                    d = e.is_dir(follow_symlinks=False)
                    if report:
                        self._found.append(Change(Kind.CREATE, p, None, d))
                    if d:
                        stack.append(p)

    def _inside(self, path: bytes) -> bool:
        return path == self.root or path.startswith(self._prefix)

    def _moved(self, old: bytes, new: bytes) -> None:
        pre = old + b"/"
        for wd, p in list(self.wds.items()):
            if p == old or p.startswith(pre):
                q = new + p[len(old):]
                self.wds[wd] = q
                self._by_path.pop(p, None)
                self._by_path[q] = wd

    def _forget(self, path: bytes) -> None:
        wd = self._by_path.pop(path, None)
        if wd is not None:
            self.wds.pop(wd, None)

    def open(self, obj: object, path: bytes, flags: int = os.O_RDONLY) -> int | None:
        try:
            return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return None

    def same(self, obj: object, path: bytes) -> bool:
        return os.path.lexists(path)

    def read(self) -> list[Change]:
        out: list[Change] = []
        for ev in self._ino.read(timeout=0):
            self._event(out, ev.wd, ev.mask, ev.cookie, os.fsencode(ev.name))
        if self._moves:  # a moved-from whose moved-to may be a moment behind
            if select.select([self.fd], [], [], _PAIR_WAIT)[0]:
                for ev in self._ino.read(timeout=0):
                    self._event(out, ev.wd, ev.mask, ev.cookie, os.fsencode(ev.name))
            for old, is_dir in self._moves.values():  # moved out of sight
                out.append(Change(Kind.MOVE, old, None, is_dir))
                if is_dir:
                    self._drop_tree(old)
            self._moves.clear()
        return out

    def _drop_tree(self, path: bytes) -> None:
        pre = path + b"/"
        for p in [p for p in self._by_path if p == path or p.startswith(pre)]:
            wd = self._by_path.pop(p)
            self.wds.pop(wd, None)
            try:
                self._ino.rm_watch(wd)
            except OSError:
                pass

    def _event(self, out: list[Change], wd: int, mask: int, cookie: int, name: bytes) -> None:
        if mask & F.Q_OVERFLOW:
            out.append(Change(Kind.OVERFLOW, self.root))
            return
        parent = self.wds.get(wd)
        if parent is None:
            return
        is_dir = bool(mask & F.ISDIR)
        if mask & F.IGNORED:
            self._forget(parent)
            return
        if mask & F.DELETE_SELF:
            if parent == self.root:
                out.append(Change(Kind.IGNORED, parent))
            return
        path = parent + b"/" + name if name else parent
        if mask & F.MOVED_FROM:
            self._moves[cookie] = (path, is_dir)
            return
        if mask & F.MOVED_TO:
            old = self._moves.pop(cookie, None)
            if old is not None:
                if is_dir:
                    self._moved(old[0], path)
                out.append(Change(Kind.MOVE, old[0], path, is_dir))
                if is_dir and (path not in self._by_path or old[0] in self._unlisted):
                    self._unlisted.discard(old[0])
                    # moved before its watch took hold: what it holds now is
                    # reported, since no event of it was
                    self._watch_tree(path, report=True)
                    out.extend(self._found)
                    self._found.clear()
            else:
                out.append(Change(Kind.MOVE_IN, path, None, is_dir))
                if is_dir:
                    self._watch_tree(path, report=False)
            return
        if mask & F.CREATE:
            out.append(Change(Kind.CREATE, path, None, is_dir))
            if is_dir:
                self._watch_tree(path, report=True)
                out.extend(self._found)
                self._found.clear()
            return
        if mask & F.DELETE:
            out.append(Change(Kind.DELETE, path, None, is_dir))
            if is_dir:
                self._forget(path)
            return
        if mask & F.MODIFY:
            out.append(Change(Kind.MODIFY, path, None, is_dir))
        if mask & F.ATTRIB:
            out.append(Change(Kind.ATTRIB, path, None, is_dir))
        if mask & F.CLOSE_WRITE:
            out.append(Change(Kind.CLOSED, path, None, is_dir))

    def close(self) -> None:
        if self.fd >= 0:
            self._ino.close()
            self.fd = -1
