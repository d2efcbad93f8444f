"""The questions a source asks the target: manifests, block checksums,
signatures, reads and link texts for a restore, orphan removal and the data
state.  Each handler takes (session, fields, data) and returns the reply's
fields and data; every field from the peer is checked before use."""
from __future__ import annotations

import errno
import mmap
import os
import stat
from typing import TYPE_CHECKING, Any

import numpy as np

from dtcore._native import _checksum, _delta
from dtcore.apply.safe_paths import SafeRoot
from dtcore.errors import StreamError
from dtcore.model.manifest import Listing
from dtcore.target.states import DATA_STATES, OK, STATE_DIR

if TYPE_CHECKING:
    from dtcore.target.session import Session

_MAX_READ = 8 << 20
# A manifest larger than this goes in several replies (a reply is one frame).
MANIFEST_PART = 16 << 20


def path_of(params: dict[str, Any]) -> bytes:
    value = params.get("path")
    if not isinstance(value, str):
        raise StreamError("request lacks its path")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise StreamError("request path is not hex") from None


def _int(params: dict[str, Any], key: str, low: int = 0, high: int = 1 << 62,
         default: int | None = None) -> int:
    value = params.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise StreamError(f"request field {key}={value!r} is out of range")
    return value


# -- request handlers: (session, params, data) -> (reply fields, reply data) --
def _manifest(s: Session, params: dict[str, Any], data: bytes) -> tuple[dict[str, Any], Any]:
    root = s.view()
    skip = STATE_DIR if root.path == s.target.root.path else None
    hash_below = params.get("hash_below", 0)
    if not isinstance(hash_below, int) or not 0 <= hash_below <= 1 << 30:
        raise StreamError(f"hash_below={hash_below!r} is out of range")
    offset = _int(params, "offset", default=0)
    if offset == 0:  # a new listing; the source asks for the rest part by part
        s.listing = Listing.walk(root.fd, skip, hash_below).data
    elif offset > len(s.listing):
        raise StreamError(f"manifest offset {offset} is past its end ({len(s.listing)} bytes)")
    return {"total": len(s.listing)}, memoryview(s.listing)[offset:offset + MANIFEST_PART]


def _sums(s: Session, params: dict[str, Any], data: bytes) -> tuple[dict[str, Any], Any]:
    block = _int(params, "block", 1, 1 << 20)
    first = _int(params, "first")
    count = _int(params, "count", 1, _MAX_READ // 8)
    fd = s._file(params)
    if fd < 0:
        return {"size": -1}, b""
    try:
        size = os.fstat(fd).st_size
        offset = min(first * block, size)
        length = min(count * block, size - offset)
        sums = _checksum.fd_checksums(fd, offset, length, block, "target file") if length else \
            np.zeros(0, np.uint64)
        return {"size": size}, sums.tobytes()
    finally:
        os.close(fd)


def _signature(s: Session, params: dict[str, Any], data: bytes) -> tuple[dict[str, Any], Any]:
    block = _int(params, "block", 1, 1 << 20)
    fd = s._file(params)
    if fd < 0:
        return {"size": -1}, b""
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            weak = strong = np.zeros(0, np.uint64)
        else:
            with mmap.mmap(fd, size, prot=mmap.PROT_READ) as m:
                weak, strong = _delta.signature(memoryview(m), block)
        return {"size": size, "blocks": len(strong)}, weak.tobytes() + strong.tobytes()
    finally:
        os.close(fd)


def _read(s: Session, params: dict[str, Any], data: bytes) -> tuple[dict[str, Any], Any]:
    offset = _int(params, "offset")
    length = _int(params, "length", 0, _MAX_READ)
    fd = s._file(params)
    if fd < 0:
        return {"size": -1}, b""
    try:
        return {"size": os.fstat(fd).st_size}, os.pread(fd, length, offset)
    finally:
        os.close(fd)


def _readlink(s: Session, params: dict[str, Any], data: bytes) -> tuple[dict[str, Any], Any]:
    dfd, name = s.view().parent(path_of(params))
    return {}, os.readlink(name, dir_fd=dfd)


def _orphans(s: Session, params: dict[str, Any], data: bytes) -> tuple[dict[str, Any], Any]:
    """Remove (or move to MoveOrphansDir) the listed paths, deepest first."""
    root = s.view()
    paths = params.get("paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise StreamError("orphans request lacks its list of paths")
    move_to = s.target.config["MoveOrphansDir"] if params.get("move") else None
    mover = SafeRoot(move_to) if move_to else None
    files = dirs = size = 0
    try:
        for path in sorted((bytes.fromhex(p) for p in paths), key=lambda p: -p.count(b"/")):
            dfd, name = root.parent(path)
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            try:
                if mover is not None:
                    mdfd, mname = mover.parent(path, create=True)
                    os.rename(name, mname, src_dir_fd=dfd, dst_dir_fd=mdfd)
                elif stat.S_ISDIR(st.st_mode):
                    os.rmdir(name, dir_fd=dfd)
                else:
                    os.unlink(name, dir_fd=dfd)
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    continue  # a folder that still holds protected files stays
                raise
            if stat.S_ISDIR(st.st_mode):
                dirs += 1
            else:
                files += 1
                size += st.st_size
        root.forget()
    finally:
        if mover is not None:
            mover.close()
    s.counters.add("Orphan Files Removed", files)
    s.counters.add("Orphan Directories Removed", dirs)
    s.counters.add("Orphan Bytes Removed", size)
    return {"files": files, "directories": dirs, "bytes": size}, b""


def _state(s: Session, params: dict[str, Any], data: bytes) -> tuple[dict[str, Any], Any]:
    new = params.get("set")
    if new is not None:
        if new not in DATA_STATES:
            raise StreamError(f"{new!r} is not a target data state")
        if not (new == OK and s.gave_up):  # a dropped op keeps Mirror Required
            s.target.states.set(s.path, new, str(params.get("reason", "")))
    return {"state": s.target.states.get(s.path)}, b""


HANDLERS = {"manifest": _manifest, "sums": _sums, "signature": _signature, "read": _read,
             "readlink": _readlink, "orphans": _orphans, "state": _state}
