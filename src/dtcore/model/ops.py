"""The replication op model and its packed batch encoding.

An op is one file-system change with a file identity and a sequence number.
A batch is the packed form that the merger, the queues and the wire share
(layout in csrc/dt_ops.h).  Every batch from outside is checked by C before
it is read; a malformed one raises :class:`dtcore.errors.StreamError` naming
the record and the byte."""
from __future__ import annotations

import os
import struct
from enum import IntEnum
from typing import Any, Iterable, NamedTuple

import numpy as np

from dtcore._buffers import byte_view
from dtcore._native import _ops
from dtcore.control import settings
from dtcore.errors import InvalidParameterError, InvalidParameterTypeError, StreamError

# An absolute symlink inside the replication set travels relative to it,
# marked by this flag in a SYMLINK op's arg, and is re-rooted at the target path.
LINK_ROOTED = 1
_PATCH_HEAD = struct.Struct("<QQ")  # instruction count, XXH3-64 of the rebuilt file


class OpKind(IntEnum):
    CREATE = 1
    WRITE = 2
    TRUNCATE = 3
    SETATTR = 4
    RENAME = 5
    DELETE = 6
    MKDIR = 7
    RMDIR = 8
    SYMLINK = 9
    LINK = 10
    PATCH = 11
    XATTR = 12  # data: the file's whole set of extended attributes (model.xattrs)


class Op(NamedTuple):
    """One replication op.  ``arg`` is the write offset, the truncate size or
    the mode of a create/mkdir; ``data`` is the written bytes, the new path of
    a rename, or packed :class:`Attrs` of a set-attributes op."""

    kind: OpKind
    file_id: int
    seq: int
    path: bytes
    arg: int = 0
    data: bytes = b""


class Attrs(NamedTuple):
    """Attributes a SETATTR op sets; ``mask`` says which fields apply."""

    mask: int
    mode: int = 0
    uid: int = 0
    gid: int = 0
    atime_ns: int = 0
    mtime_ns: int = 0

    MODE = 1
    OWNER = 2
    TIMES = 4
    _FORMAT = struct.Struct("<IIIIqq")

    def pack(self) -> bytes:
        return self._FORMAT.pack(*self)

    @classmethod
    def of(cls, st: os.stat_result) -> "Attrs":
        """Mode, owner and times of a stat result."""
        return cls(cls.MODE | cls.OWNER | cls.TIMES, st.st_mode, st.st_uid, st.st_gid,
                   st.st_atime_ns, st.st_mtime_ns)

    @classmethod
    def unpack(cls, data: bytes) -> "Attrs":
        return cls(*cls._FORMAT.unpack(data))


class BatchInfo(NamedTuple):
    count: int
    data_bytes: int
    writes: int


def pack_batch(ops: Iterable[Op | tuple]) -> bytearray:
    """Encode ops into one batch."""
    items = list(ops)
    for i, op in enumerate(items):
        if not isinstance(op, tuple) or len(op) < 4:
            raise InvalidParameterTypeError(f"op {i}: expected an Op, got {type(op).__name__}")
        if isinstance(op[3], str) or (len(op) > 5 and isinstance(op[5], str)):
            raise InvalidParameterTypeError(f"op {i}: paths and data must be bytes, not str")
        if len(op) < 6:
            items[i] = Op(*op)
        if any(not isinstance(v, int) or v < 0 for v in (op[1], op[2], items[i][4])):
            raise InvalidParameterError(f"op {i}: file_id, seq and arg must be integers >= 0")
    try:
        return _ops.pack(items)
    except OverflowError as e:
        raise InvalidParameterError(f"op too large to encode: {e}") from None


def unpack_batch(batch: Any, lend: bool = False) -> list[Op]:
    """Decode a batch into ops.  With ``lend``, the data of a large write is
    a read-only memoryview of ``batch`` rather than a copy: for a consumer
    done with the ops before the batch's buffer is reused."""
    return [Op(OpKind(k), *rest) for k, *rest in _ops.unpack(byte_view(batch, "batch"), lend)]


def scan_batch(batch: Any) -> BatchInfo:
    """Check a batch and count its ops and write payload."""
    return BatchInfo(*_ops.scan(byte_view(batch, "batch")))


def merge_batch(batch: Any,
                max_write_chunk_size: int = settings.default("MaxWriteChunkSize"),
                *, into: Any = None) -> bytearray | memoryview:
    """Merge the writes of one batch (touching or overlapping writes to a file
    become ops of at most ``MaxWriteChunkSize`` bytes, newest bytes winning)
    and return the merged batch.  Releases the GIL while merging.

    With ``into`` (a writable buffer of at least :func:`merge_bound` bytes,
    reused across calls to spare the allocation), the merged batch is written
    there and a memoryview of it is returned."""
    settings.check("MaxWriteChunkSize", max_write_chunk_size)
    view = byte_view(batch, "batch")
    if into is None:
        return _ops.merge(view, max_write_chunk_size)
    target = byte_view(into, "into")
    if target.readonly:
        raise InvalidParameterTypeError("into: the output buffer must be writable")
    try:
        used = _ops.merge(view, max_write_chunk_size, target)
    except ValueError as e:
        if isinstance(e, StreamError):
            raise
        raise InvalidParameterError(f"into: {e}") from None
    return target[:used]


def merge_bound(batch: Any, max_write_chunk_size: int = settings.default("MaxWriteChunkSize")) -> int:
    """Bytes of output that always suffice to merge ``batch``."""
    settings.check("MaxWriteChunkSize", max_write_chunk_size)
    return _ops.merge_bound(byte_view(batch, "batch"), max_write_chunk_size)


# -- the PATCH payload: a rolling delta against the target's current copy --
def patch_size(instructions: np.ndarray, literals: Any) -> int:
    """Bytes of the PATCH payload for these instructions and literals."""
    return _PATCH_HEAD.size + 16 * len(instructions) + len(literals)


def encode_patch(instructions: np.ndarray, source_hash: int, literals: Any) -> bytes:
    """A PATCH op's data: the header, the (offset, length) instructions as
    little-endian int64 pairs (offset -1: take literal bytes), the literals."""
    out = bytearray(_PATCH_HEAD.pack(len(instructions), source_hash))
    out += np.ascontiguousarray(instructions, dtype="<i8").tobytes()
    out += literals
    return bytes(out)


def decode_patch(data: Any, path: bytes = b"") -> tuple[np.ndarray, int, memoryview]:
    """(instructions as an (n, 2) int64 array, XXH3-64 of the rebuilt file,
    literal bytes) of a PATCH payload; StreamError when it is cut short."""
    view = memoryview(data).cast("B")
    if len(view) < _PATCH_HEAD.size:
        raise StreamError(f"patch for {path!r} is shorter than its header")
    count, want = _PATCH_HEAD.unpack_from(view)
    if count > (len(view) - _PATCH_HEAD.size) // 16:
        raise StreamError(f"patch for {path!r} claims {count} instructions")
    end = _PATCH_HEAD.size + 16 * count
    insns = np.frombuffer(view[_PATCH_HEAD.size:end], dtype="<i8").reshape(-1, 2)
    return insns, want, view[end:]
