"""Block checksums: XXH3-64 of every ``MirrorChunkSize`` block of a buffer or
file, and the block ranges where two checksum arrays differ.

Calls on more than 64 KiB release the GIL, so threads checksumming different
files run in parallel."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from dtcore._buffers import byte_view
from dtcore._native import _checksum
from dtcore.control import settings
from dtcore.errors import FileAccessError, InvalidParameterTypeError

PathOrFd = str | os.PathLike[str] | int


def xxh3_64(data: Any) -> int:
    """XXH3-64 (seed 0) of a bytes-like object."""
    return _checksum.xxh3_64(byte_view(data, "data"))


def block_checksums(data: Any, block_size: int = settings.default("MirrorChunkSize")) -> np.ndarray:
    """XXH3-64 of each ``block_size`` block of ``data`` (the last may be short),
    as a ``uint64`` array."""
    settings.check("MirrorChunkSize", block_size)
    return _checksum.block_checksums(byte_view(data, "data"), block_size)


def file_checksums(file: PathOrFd, block_size: int = settings.default("MirrorChunkSize"),
                   offset: int = 0, length: int | None = None) -> np.ndarray:
    """Block checksums of a file (a path or an open descriptor), from ``offset``
    for ``length`` bytes (to the end by default), read sequentially."""
    settings.check("MirrorChunkSize", block_size)
    if offset < 0 or (length is not None and length < 0):
        from dtcore.errors import InvalidParameterError
        raise InvalidParameterError(f"offset {offset} and length {length} must not be negative")
    if isinstance(file, bool) or not isinstance(file, (int, str, os.PathLike)):
        raise InvalidParameterTypeError(f"file: expected a path or a descriptor, got {type(file).__name__}")
    own = not isinstance(file, int)
    try:
        fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC) if own else file
    except OSError as e:
        raise FileAccessError(f"cannot open {file}: {e.strerror}", e.errno or 0) from None
    try:
        if length is None:
            length = max(os.fstat(fd).st_size - offset, 0)
        return _checksum.fd_checksums(fd, offset, length, block_size, str(file))
    finally:
        if own:
            os.close(fd)


def differing_blocks(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per source block, whether it differs from the target's: blocks beyond
    the end of the target always do (a bool array as long as ``source``)."""
    source = np.asarray(source, dtype=np.uint64)
    target = np.asarray(target, dtype=np.uint64)
    common = min(len(source), len(target))
    differs = np.ones(len(source), dtype=bool)
    differs[:common] = source[:common] != target[:common]
    return differs


def runs(flags: np.ndarray) -> np.ndarray:
    """The coalesced ``[start, stop)`` ranges where ``flags`` is set, as an
    ``(n, 2)`` int64 array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], np.asarray(flags, np.int8), [0]))))
    return edges.reshape(-1, 2).astype(np.int64)


def differing_ranges(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Coalesced ``[start, stop)`` block ranges where ``source`` differs from
    ``target``, as an ``(n, 2)`` int64 array.  Source blocks beyond the end of
    the target always differ; target blocks beyond the source are not listed
    (the file is truncated instead)."""
    return runs(differing_blocks(source, target))
