"""Paths beneath a root that a peer cannot escape.

Every path a peer sends is checked (relative, no ``..``, ``.``, empty or NUL
components, no name over 255 bytes) and then resolved one component at a
time from an open handle on the root, each folder opened with
``O_NOFOLLOW | O_DIRECTORY`` relative to its parent.  The last component is
only ever used through its parent's handle with no-follow flags.  A symlink
swapped in anywhere between a check and a use makes the open fail
(``ELOOP``/``ENOTDIR``) instead of leading outside the root."""
from __future__ import annotations

import errno
import os
from collections import OrderedDict

from dtcore.errors import InvalidPathError
from dtcore.model.paths import check_path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CACHE = 256


class _Generation:
    """Bumped by any clone's forget(): every clone then drops its cache."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class SafeRoot:
    """An open root folder and a small cache of its sub-folder handles.

    The cache belongs to one thread; threads working beneath the same root
    each take a :meth:`clone`, and a forget() in any clone reaches them all."""

    def __init__(self, root: str | os.PathLike[str], create: bool = True,
                 reserved: bytes | None = None) -> None:
        self.path = os.path.abspath(os.fspath(root))
        if create:
            os.makedirs(self.path, exist_ok=True)
        self.fd = os.open(self.path, _DIR_FLAGS & ~os.O_NOFOLLOW)
        self.reserved = reserved
        self._dirs: OrderedDict[tuple[bytes, ...], int] = OrderedDict()
        self._gen = _Generation()
        self._seen = 0

    def _child(self, path: str, fd: int, reserved: bytes | None, gen: _Generation) -> "SafeRoot":
        child = SafeRoot.__new__(SafeRoot)
        child.path, child.fd, child.reserved, child._dirs = path, fd, reserved, OrderedDict()
        child._gen, child._seen = gen, gen.value
        return child

    def clone(self) -> "SafeRoot":
        """The same root with a cache of its own, for another thread."""
        return self._child(self.path, os.dup(self.fd), self.reserved, self._gen)

    def sub(self, path: bytes) -> "SafeRoot":
        """A root for a folder beneath this one (created if missing), reached
        without following symlinks."""
        if not path.strip(b"/"):
            return SafeRoot(self.path, reserved=self.reserved)
        parts = check_path(path.strip(b"/"), self.reserved)
        self.forget()  # reach it afresh: a cached handle may be of a folder since removed
        fd = os.dup(self.dir_fd(parts, create=True))
        return self._child(os.path.join(self.path, os.fsdecode(b"/".join(parts))), fd, None,
                           _Generation())

    def close(self) -> None:
        self._drop()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def forget(self) -> None:
        """Drop cached folder handles (after a rename or removal of folders),
        here and, at their next lookup, in every clone."""
        self._gen.value += 1
        self._drop()

    def refresh(self) -> None:
        """Drop this clone's cache if another clone forgot since; called
        between ops, never while a borrowed handle is in use."""
        if self._seen != self._gen.value:
            self._drop()

    def _drop(self) -> None:
        self._seen = self._gen.value
        while self._dirs:
            os.close(self._dirs.popitem()[1])

    def dir_fd(self, parts: tuple[bytes, ...], create: bool = False, mode: int = 0o755) -> int:
        """Handle of the folder ``parts`` beneath the root (borrowed: do not close)."""
        if not parts:
            return self.fd
        fd = self._dirs.get(parts)
        if fd is not None:
            self._dirs.move_to_end(parts)
            return fd
        parent = self.dir_fd(parts[:-1], create, mode)
        try:
            fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            try:
                os.mkdir(parts[-1], mode, dir_fd=parent)
            except FileExistsError:
                pass
            fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise InvalidPathError(
                    f"{b'/'.join(parts)!r} is not a folder beneath the root "
                    "(a symlink or a file is in the way)") from None
            raise
        self._dirs[parts] = fd
        if len(self._dirs) > _CACHE:
            os.close(self._dirs.popitem(last=False)[1])
        return fd

    def parent(self, path: bytes, create: bool = False) -> tuple[int, bytes]:
        """(handle of the parent folder, last component) for a peer path."""
        parts = check_path(path, self.reserved)
        return self.dir_fd(parts[:-1], create), parts[-1]

    def open(self, path: bytes, flags: int, mode: int = 0o600, create_dirs: bool = False) -> int:
        """Open a file beneath the root without following a symlink anywhere.
        Never blocks on a FIFO found there (O_NONBLOCK; it means nothing for a
        regular file); callers check what they opened is one."""
        dfd, name = self.parent(path, create_dirs)
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode,
                           dir_fd=dfd)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise InvalidPathError(f"{path!r} is a symlink; it is not followed") from None
            raise

    def lstat(self, path: bytes) -> os.stat_result:
        dfd, name = self.parent(path)
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)

    def __enter__(self) -> "SafeRoot":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
