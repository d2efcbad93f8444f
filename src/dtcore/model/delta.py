"""Rolling delta (beyond the original engine).

Aligned block checksums resend everything after an insertion.  Here the
target sends a signature of its copy (a weak rolling sum and XXH3-64 per
block); the source finds those blocks at any byte offset of its file and
produces instructions: copy a range of the target, or take literal bytes.
The target rebuilds the file from its old copy and the instructions, and
checks the result against the source's whole-file hash."""
from __future__ import annotations

import mmap
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from dtcore._buffers import byte_view
from dtcore._native import _checksum, _delta
from dtcore.control import settings
from dtcore.errors import FileAccessError, InvalidParameterTypeError, StreamError

#: Size of one instruction on the wire (two int64).
INSTRUCTION_BYTES = 16


@dataclass(frozen=True)
class Signature:
    """What the target knows of its copy: per-block weak and strong sums."""

    block_size: int
    size: int
    weak: np.ndarray
    strong: np.ndarray

    @property
    def wire_bytes(self) -> int:
        return 16 * len(self.strong)


@dataclass(frozen=True)
class Delta:
    """Instructions ``(target_offset, length)`` with ``-1`` meaning literal,
    the literal bytes in order, and the rebuilt file's size and XXH3-64."""

    instructions: np.ndarray
    literals: bytes | bytearray
    source_size: int
    source_hash: int

    @property
    def wire_bytes(self) -> int:
        """Bytes this delta costs to send."""
        return len(self.literals) + INSTRUCTION_BYTES * len(self.instructions) + 16


@contextmanager
def mapped(path: str | os.PathLike[str]) -> Iterator[Any]:
    """A read-only, zero-copy view of a whole file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise FileAccessError(f"cannot open {path}: {e.strerror}", e.errno or 0) from None
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            yield b""
            return
        with mmap.mmap(fd, size, prot=mmap.PROT_READ) as m:
            m.madvise(mmap.MADV_SEQUENTIAL)
            yield m
    finally:
        os.close(fd)


def signature(data: Any, block_size: int = settings.default("MirrorChunkSize")) -> Signature:
    """Signature of the target's copy, held in memory."""
    settings.check("MirrorChunkSize", block_size)
    view = byte_view(data, "data")
    weak, strong = _delta.signature(view, block_size)
    return Signature(block_size, len(view), weak, strong)


def file_signature(path: str | os.PathLike[str],
                   block_size: int = settings.default("MirrorChunkSize")) -> Signature:
    """Signature of a file on disk (mapped, not copied)."""
    with mapped(path) as m:
        return signature(m, block_size)


def delta(sig: Signature, data: Any) -> Delta:
    """Delta that rebuilds ``data`` from the copy that ``sig`` describes."""
    if not isinstance(sig, Signature):
        raise InvalidParameterTypeError(f"sig: expected a Signature, got {type(sig).__name__}")
    view = byte_view(data, "data")
    table, literals = _delta.build(sig.weak, sig.strong, sig.size, sig.block_size, view)
    return Delta(table, literals, len(view), _checksum.xxh3_64(view))


def file_delta(sig: Signature, path: str | os.PathLike[str]) -> Delta:
    """Delta of a file on disk against the copy ``sig`` describes."""
    with mapped(path) as m:
        return delta(sig, m)


def apply_delta(target: Any, d: Delta, *, verify: bool = True) -> bytearray:
    """Rebuild the source file from the target copy and a delta.  Every
    instruction is bounds-checked; with ``verify`` the result must hash to
    ``d.source_hash``.  Bad instructions raise :class:`StreamError`."""
    if not isinstance(d, Delta):
        raise InvalidParameterTypeError(f"d: expected a Delta, got {type(d).__name__}")
    insns = d.instructions
    if not isinstance(insns, np.ndarray) or insns.dtype != np.int64 or insns.ndim != 2 or (
            insns.shape[1] != 2):
        raise StreamError("delta instructions must be an (n, 2) int64 array")
    if d.source_size < 0:
        raise StreamError(f"delta source size {d.source_size} is negative")
    out = _delta.apply(byte_view(target, "target"), np.ascontiguousarray(insns),
                       byte_view(d.literals, "literals"), d.source_size)
    if verify and _checksum.xxh3_64(out) != d.source_hash:
        raise StreamError("rebuilt file does not match the source hash "
                          f"(expected {d.source_hash:#018x})")
    return out
