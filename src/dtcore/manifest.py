"""Manifests: what one side holds (path, kind, size, times, mode, owner),
listed beneath a safe root and packed for the wire.

Each entry is a 48-byte record followed by its path::

    path_len u16 | kind u8 | has_hash u8 | mode u32 | size i64 | mtime_ns i64 |
    atime_ns i64 | uid u32 | gid u32 | hash u64

A checksum manifest carries the XXH3-64 of every regular file below a size
(the small files a checksum mirror compares whole), computed while listing.
"""
from __future__ import annotations

import os
import stat
import struct
from typing import Iterator

from dtcore._native import _checksum
from dtcore.errors import StreamError
from dtcore.repset import DIR, FILE, LINK, Entry
from dtcore.tree import SafeRoot, check_path

_REC = struct.Struct("<HBBIqqqIIQ")
_KINDS = {FILE: 1, DIR: 2, LINK: 3}
_NAMES = {v: k for k, v in _KINDS.items()}


def pack(entries: list[Entry]) -> bytearray:
    out = bytearray()
    for e in entries:
        out += _REC.pack(len(e.path), _KINDS[e.kind], e.hash >= 0, e.mode, e.size, e.mtime_ns,
                         e.atime_ns, e.uid, e.gid, max(e.hash, 0))
        out += e.path
    return out


def unpack(data: bytes | memoryview) -> dict[bytes, Entry]:
    """Entries by path; a malformed manifest raises StreamError."""
    view = memoryview(data)
    out: dict[bytes, Entry] = {}
    pos = 0
    while pos < len(view):
        if len(view) - pos < _REC.size:
            raise StreamError(f"manifest cut short at byte {pos}")
        n, kind, has_hash, mode, size, mtime, atime, uid, gid, digest = _REC.unpack_from(view, pos)
        pos += _REC.size
        path = bytes(view[pos:pos + n])
        pos += n
        if len(path) != n or kind not in _NAMES:
            raise StreamError(f"manifest entry at byte {pos} is malformed")
        check_path(path)
        out[path] = Entry(path, _NAMES[kind], size, mtime, mode, uid, gid, 0, 0, 1, atime,
                          digest if has_hash else -1)
    return out


def file_hash(dir_fd: int | None, name: bytes | str) -> int:
    """XXH3-64 of a small file's content, read without following a symlink
    (``name`` relative to ``dir_fd``, or a whole path with None)."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        return _checksum.xxh3_64(os.read(fd, os.fstat(fd).st_size + 1))
    finally:
        os.close(fd)


def walk(root: SafeRoot, skip: bytes | None = None, hash_below: int = 0) -> Iterator[Entry]:
    """Every file, folder and symlink beneath ``root``, folders first, read
    through folder handles so that nothing outside the root is listed; with
    ``hash_below``, regular files smaller than that carry their hash."""
    stack: list[tuple[bytes, ...]] = [()]
    while stack:
        parts = stack.pop()
        try:
            fd = root.dir_fd(parts)
            with os.scandir(fd) as it:
                items = sorted((e.name, e.stat(follow_symlinks=False)) for e in it)
        except OSError:
            continue
        subdirs = []
        for name, st in items:
            name = os.fsencode(name)
            if not parts and name == skip:
                continue
            child = parts + (name,)
            if stat.S_ISREG(st.st_mode) and st.st_size < hash_below:
                try:
                    digest = file_hash(fd, name)
                except OSError:
                    digest = -1
                yield Entry.of(b"/".join(child), st)._replace(hash=digest)
            elif stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                yield Entry.of(b"/".join(child), st)
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(child)
        stack.extend(reversed(subdirs))
