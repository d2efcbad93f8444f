"""Restore: bring the target's copy back to the source.

The source pulls: it reads the target's manifest, decides per file with
``RestoreOverwrite`` (0 never, 1 always, 2 only when the target's copy is
newer), fetches whole files or, for large files it already holds, only the
blocks whose checksums differ, and applies them through the same safe,
retrying applier the target uses, so a target cannot write outside the
source folder either."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from dtcore.apply.applier import Applier
from dtcore.apply.safe_paths import SafeRoot
from dtcore.control.events import emit
from dtcore.model.checksum import differing_ranges, file_checksums
from dtcore.model.manifest import DIR, LINK, Entry, Listing
from dtcore.model.ops import Op, OpKind
from dtcore.protocol.messages import LinksRequest, ReadlinkRequest, ReadRequest, XattrsRequest
from dtcore.source.connection import Connection

_CHUNK = 4 << 20
_WINDOW = 8


@dataclass
class RestoreResult:
    files: int = 0
    directories: int = 0
    skipped: int = 0
    bytes_fetched: int = 0
    seconds: float = 0.0


def restore(conn: Connection, destination: str | os.PathLike[str], *, overwrite: int | None = None,
            block: int | None = None, small_file: int | None = None,
            progress: Callable[[RestoreResult], None] | None = None) -> RestoreResult:
    """Copy the connection's target path back into ``destination``."""
    cfg = conn.config
    overwrite = cfg["RestoreOverwrite"] if overwrite is None else overwrite
    block = block or cfg["MirrorChunkSize"]
    small_file = cfg["SmallFileThreshold"] if small_file is None else small_file
    label = conn.label()
    emit(4053, conn=label)
    start = time.monotonic()
    result = RestoreResult()
    theirs = list(Listing.parse(conn.manifest()))
    # hard links: each name after a file's first becomes a link to it
    first_of = {}
    for group in bytes(conn.call(LinksRequest())[1]).split(b"\0\0")[:-1]:
        names = group.split(b"\0")
        first_of.update((name, names[0]) for name in names[1:])
    os.makedirs(destination, exist_ok=True)  # a restore may go to a new folder
    with SafeRoot(destination) as root:
        applier = Applier(root, retry_delay=cfg["TGRetryLocked"], retry_limit=max(1, cfg["TGExecutionRetryLimit"]))
        try:
            with_xattrs = bool(cfg["ExtendedAttributes"])
            for t in theirs:
                if t.path in first_of:
                    if _keep_local(_local(root, t), t, overwrite):
                        result.skipped += 1
                    else:
                        result.files += 1
                        applier.apply([Op(OpKind.DELETE, 0, 0, t.path),
                                       Op(OpKind.LINK, 0, 0, t.path, 0, first_of[t.path])])
                    continue
                for op in _entry_ops(conn, root, t, overwrite, block, small_file, result):
                    if with_xattrs and op.kind == OpKind.SETATTR:  # just before the times
                        applier.apply([_xattr_op(conn, t.path)])
                    applier.apply([op])
                    if progress is not None and op.kind == OpKind.WRITE:  # each chunk fetched
                        progress(result)
                if progress is not None:
                    progress(result)
            # folder times last: filling a folder changes them
            for t in reversed(theirs):
                if t.kind == DIR:
                    if with_xattrs:
                        applier.apply([_xattr_op(conn, t.path)])
                    applier.apply([Op(OpKind.SETATTR, 0, 0, t.path, 0, t.attrs())])
            Applier.set_fd_attrs(root.fd, conn.root_attrs())
        finally:
            applier.close()
    result.seconds = time.monotonic() - start
    emit(4057, conn=label)
    return result


def _xattr_op(conn: Connection, path: bytes) -> Op:
    return Op(OpKind.XATTR, 0, 0, path, 0, bytes(conn.call(XattrsRequest(path))[1]))


def _local(root: SafeRoot, t: Entry) -> os.stat_result | None:
    try:
        return root.lstat(t.path)
    except FileNotFoundError:
        return None


def _keep_local(mine: os.stat_result | None, t: Entry, overwrite: int) -> bool:
    """Whether RestoreOverwrite keeps the local copy ``mine`` of ``t`` (0
    never overwrites, 2 only with a newer target copy)."""
    return mine is not None and (overwrite == 0 or (overwrite == 2 and
                                                    mine.st_mtime_ns >= t.mtime_ns))


def _entry_ops(conn: Connection, root: SafeRoot, t: Entry, overwrite: int, block: int,
               small_file: int, result: RestoreResult) -> Iterator[Op]:
    """The ops that restore one entry, fetched as they are applied."""
    if t.kind == DIR:
        result.directories += 1
        yield Op(OpKind.MKDIR, 0, 0, t.path, t.mode)
        return
    mine = _local(root, t)
    if _keep_local(mine, t, overwrite):
        result.skipped += 1
        return
    result.files += 1
    if t.kind == LINK:
        yield Op(OpKind.SYMLINK, 0, 0, t.path, 0, bytes(conn.call(ReadlinkRequest(t.path))[1]))
        yield Op(OpKind.SETATTR, 0, 0, t.path, 0, t.attrs())
        return
    if mine is not None and mine.st_size >= small_file and t.size >= small_file:
        for lo, hi in _differing(conn, root, t, block):
            yield from _fetch(conn, t.path, lo, hi, result)
        yield Op(OpKind.TRUNCATE, 0, 0, t.path, t.size)
    else:
        yield Op(OpKind.CREATE, 0, 0, t.path, 0o600)
        yield from _fetch(conn, t.path, 0, t.size, result)
    yield Op(OpKind.SETATTR, 0, 0, t.path, 0, t.attrs())


def _differing(conn: Connection, root: SafeRoot, t: Entry, block: int) -> list[tuple[int, int]]:
    fd = root.open(t.path, os.O_RDONLY)
    try:
        ours = file_checksums(fd, block)
    finally:
        os.close(fd)
    parts = [sums for _, _, sums in conn.block_sums(t.path, t.size, block, max(1, _CHUNK // block),
                                                   _WINDOW)]
    theirs = np.concatenate(parts)
    # what the target has and we lack, or have differently
    return [(lo * block, min(hi * block, t.size))
            for lo, hi in differing_ranges(theirs, ours).tolist()]


def _fetch(conn: Connection, path: bytes, start: int, end: int, result: RestoreResult) -> Iterator[Op]:
    offsets = list(range(start, end, _CHUNK))
    for i in range(0, len(offsets), _WINDOW):
        futures = [(off, conn.request(ReadRequest(path, off, min(_CHUNK, end - off))))
                   for off in offsets[i:i + _WINDOW]]
        for off, fut in futures:
            data = bytes(fut.result(600)[1])
            result.bytes_fetched += len(data)
            yield Op(OpKind.WRITE, 0, 0, path, off, data)
