"""Manifests: what one side holds (path, kind, size, times, mode, owner),
listed by the native walk and compared in bulk.

Each entry is a 48-byte record followed by its path::

    path_len u16 | kind u8 | has_hash u8 | mode u32 | size i64 | mtime_ns i64 |
    atime_ns i64 | uid u32 | gid u32 | hash u64

A checksum manifest carries the XXH3-64 of every regular file below a size
(the small files a checksum mirror compares whole), computed while listing.
The same packed records travel on the wire, so the target's listing is sent
as it was made and the source indexes it without unpacking every entry.

A walk can be taken in parts (:class:`Parts`); every walk lists paths in
one order (:func:`order_key`), so two listings can be compared part by part
and neither side holds a whole large tree's manifest.
"""
from __future__ import annotations

import os
import struct
from typing import Callable, Iterator, NamedTuple

import numpy as np

from dtcore._native import _walk
from dtcore.model.ops import Attrs
from dtcore.model.paths import check_path

FILE, DIR, LINK = "f", "d", "l"
KIND_FILE, KIND_DIR, KIND_LINK = 1, 2, 3
_NAMES = {KIND_FILE: FILE, KIND_DIR: DIR, KIND_LINK: LINK}
_REC = struct.Struct("<HBBIqqqIIQ")
_SPECIAL = {ord("p"): "fifo", ord("s"): "socket", ord("c"): "character device",
            ord("b"): "block device"}

# Flags of Listing.compare, one set per entry of ours (csrc/dt_walk.h).
THERE, SAME_KIND, SAME_SIZE, SAME_MTIME, SAME_MODE, HASHED, SAME_HASH, SAME_OWNER, NEWER = (
    1 << i for i in range(9))


def order_key(path: bytes) -> tuple[tuple[int, bytes], ...]:
    """A key that sorts paths the way a walk lists them: a folder's own
    entries by name, then each sub-folder's contents in the same order."""
    parts = path.split(b"/")
    return tuple((1, p) for p in parts[:-1]) + ((0, parts[-1]),)


class Entry(NamedTuple):
    """One listed item: its path relative to the root and what ``lstat`` said."""

    path: bytes
    kind: str
    size: int
    mtime_ns: int
    mode: int
    uid: int
    gid: int
    ino: int
    dev: int
    nlink: int
    atime_ns: int
    #: XXH3-64 of a small file's content when a checksum listing asked for it, else -1
    hash: int = -1

    def now(self, st: os.stat_result) -> "Entry":
        """This entry with the mode, owner and times of a later look at it."""
        return self._replace(mode=st.st_mode & 0o7777, uid=st.st_uid, gid=st.st_gid,
                             atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns)

    def attrs(self) -> bytes:
        """A packed SETATTR payload giving this entry's mode, owner and times."""
        return Attrs(Attrs.MODE | Attrs.OWNER | Attrs.TIMES, self.mode, self.uid, self.gid,
                     self.atime_ns, self.mtime_ns).pack()


class Listing:
    """Packed manifest records with the offset of each; a local walk also
    keeps each entry's inode, device and link count (for hard links)."""

    def __init__(self, data: bytes | memoryview, offsets: np.ndarray,
                 ids: np.ndarray | None = None, special: bytes = b"") -> None:
        self.data = data
        self.offsets = offsets
        self.ids = ids
        self._special = special
        self._columns: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def walk(cls, root_fd: int, skip: bytes | None = None, hash_below: int = 0,
             ids: bool = False) -> "Listing":
        """Everything beneath the folder open as ``root_fd``, folders before
        what they hold, nothing followed through a symlink; with
        ``hash_below``, regular files smaller than that carry their hash."""
        return cls(*_walk.walk(root_fd, skip, hash_below, ids))

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> "Listing":
        """A manifest received from a peer, kept in the buffer it came in
        (which must not change after); broken framing, or paths out of walk
        order (:func:`order_key`), raise StreamError.
        Paths are checked as entries are taken out (:meth:`entry`)."""
        view = memoryview(data).cast("B").toreadonly()
        return cls(view, _walk.index(view))

    def __len__(self) -> int:
        return len(self.offsets)

    def upto(self, key: tuple[tuple[int, bytes], ...]) -> int:
        """How many leading entries sort at or before ``key`` (an
        :func:`order_key`) in walk order."""
        lo, hi = 0, len(self)
        while lo < hi:
            mid = (lo + hi) // 2
            if order_key(self.path(mid)) <= key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def record(self, i: int) -> memoryview:
        """The packed record of entry ``i``."""
        at = int(self.offsets[i])
        n = int.from_bytes(self.data[at:at + 2], "little")
        return memoryview(self.data)[at:at + _REC.size + n]

    def records(self, start: int = 0) -> memoryview:
        """The packed records of the entries from ``start`` on (of a parsed
        listing, whose records follow each other)."""
        view = memoryview(self.data)
        return view[int(self.offsets[start]):] if start < len(self) else view[:0]

    def special(self) -> list[tuple[str, bytes]]:
        """What a local walk found and left out, as (kind, path): kind is
        "fifo", "socket", "character device" or "block device"."""
        return [(_SPECIAL[item[0]], item[1:]) for item in self._special.split(b"\0")[:-1]]

    def path(self, i: int) -> bytes:
        at = int(self.offsets[i])
        n = int.from_bytes(self.data[at:at + 2], "little")
        return bytes(self.data[at + _REC.size:at + _REC.size + n])

    def entry(self, i: int) -> Entry:
        at = int(self.offsets[i])
        n, kind, has_hash, mode, size, mtime, atime, uid, gid, digest = _REC.unpack_from(self.data, at)
        path = bytes(self.data[at + _REC.size:at + _REC.size + n])
        check_path(path)
        ino, dev, nlink = self.ids[i].tolist() if self.ids is not None else (0, 0, 1)
        return Entry(path, _NAMES[kind], size, mtime, mode, uid, gid, ino, dev, nlink, atime,
                     digest if has_hash else -1)

    def __iter__(self) -> Iterator[Entry]:
        return (self.entry(i) for i in range(len(self)))

    def columns(self) -> tuple[np.ndarray, np.ndarray]:
        """(kind, size) of every entry, as arrays (kinds are KIND_*)."""
        if self._columns is None:
            self._columns = _walk.columns(self.data, self.offsets)
        return self._columns

    def among(self, paths: set[bytes]) -> np.ndarray:
        """Which entries have one of ``paths``."""
        return np.fromiter((self.path(i) in paths for i in range(len(self))), bool, len(self))

    def take(self, keep: np.ndarray, special: Callable[[bytes], bool] | None = None) -> "Listing":
        """The entries where ``keep`` is true (records are shared, not copied),
        and the special files whose path ``special`` accepts."""
        names = b"".join(item + b"\0" for item in self._special.split(b"\0")[:-1]
                         if special is None or special(item[1:]))
        return Listing(self.data, self.offsets[keep], None if self.ids is None else self.ids[keep],
                       names)

    def compare(self, theirs: "Listing") -> tuple[np.ndarray, np.ndarray]:
        """(flags, match): for each of our entries the flags above against
        their entry of the same path, and that entry's index (-1 if none)."""
        return _walk.compare(self.data, self.offsets, theirs.data, theirs.offsets)


WHOLE_WALK = 1 << 62  # a part size that holds any walk


class Parts:
    """:meth:`Listing.walk` of a folder (its path, or a descriptor open on
    it, which may be closed after) in parts of about ``part`` bytes of
    records, each walked when it is asked for."""

    def __init__(self, path: str | os.PathLike[str] | int, part: int, skip: bytes | None = None,
                 hash_below: int = 0, ids: bool = False) -> None:
        fd = path if isinstance(path, int) else \
            os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._walker = _walk.Walker(fd, skip, hash_below, ids)
        finally:
            if not isinstance(path, int):
                os.close(fd)
        self.part = part

    @property
    def done(self) -> bool:
        """Whether the walk has listed everything."""
        return self._walker.done

    def next(self) -> Listing:
        """The next part (empty once the walk is done)."""
        return Listing(*self._walker.next(self.part))

    def __iter__(self) -> Iterator[Listing]:
        while not self.done:
            yield self.next()


def listing_of(path: str | os.PathLike[str], skip: bytes | None = None, hash_below: int = 0,
               ids: bool = False) -> Listing:
    """:meth:`Listing.walk` of a folder named by its path."""
    return Parts(path, WHOLE_WALK, skip, hash_below, ids).next()
