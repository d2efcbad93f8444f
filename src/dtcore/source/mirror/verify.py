"""Verify: how a file on the source differs from its target copy, found by
comparing sizes, then block checksums (both sides hashing at once), then
modification times.  Nothing is sent; the mirror records what is reported."""
from __future__ import annotations

import os

from dtcore.errors import FileAccessError
from dtcore.model.checksum import differing_ranges
from dtcore.model.manifest import FILE, Entry
from dtcore.source.connection import Connection
from dtcore.source.mirror.options import MirrorOptions
from dtcore.source.mirror.send import WINDOW, source_sums


def file_difference(conn: Connection, path: bytes, e: Entry, t: Entry | None,
                    opts: MirrorOptions) -> str | None:
    """Why the target copy ``t`` of the file ``e`` (at ``path`` on the
    source) differs, or None when it does not."""
    if t is None or t.kind != FILE:
        return "missing on the target"
    if t.size != e.size:
        return f"size {t.size} on the target, {e.size} on the source"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise FileAccessError(f"cannot read {os.fsdecode(path)}: {exc.strerror}") from None
    try:
        differ = differing_blocks(conn, e, fd, opts)
    finally:
        os.close(fd)
    if differ:
        return f"{differ} of {-(-e.size // opts.block)} blocks differ"
    if t.mtime_ns != e.mtime_ns:
        return "modification times differ"
    return None


def differing_blocks(conn: Connection, e: Entry, fd: int, opts: MirrorOptions) -> int:
    """How many of the file's blocks differ from the target's."""
    block, per = opts.block, opts.max_checksum_blocks
    differ = 0
    for first, _, theirs in conn.block_sums(e.path, e.size, block, per, WINDOW):
        ours = source_sums(fd, first * block, min(per * block, e.size - first * block), block)
        differ += sum(hi - lo for lo, hi in differing_ranges(ours, theirs).tolist())
    return differ
