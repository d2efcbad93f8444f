"""The source's bulk packing of small files (csrc/dt_pack_smallfiles.c) against
the ops the general path makes for the same files, one Op at a time in
Python: CREATE 0600, the content in WRITEs of one block at most, SETATTR of
the listed mode, owner and times."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtcore._native import _smallfiles
from dtcore.errors import InvalidParameterError
from dtcore.model.manifest import KIND_FILE, Listing, listing_of
from dtcore.model.ops import Op, OpKind, unpack_batch

MAX = 64 << 10


def expected(root: Path, listing: Listing, picked: list[int], block: int, seq: int) -> list[Op]:
    ops = []
    for i in picked:
        e = listing.entry(i)
        content = (root / os.fsdecode(e.path)).read_bytes()
        ops.append(Op(OpKind.CREATE, 0, seq, e.path, 0o600))
        seq += 1
        for off in range(0, len(content), block):
            ops.append(Op(OpKind.WRITE, 0, seq, e.path, off, content[off:off + block]))
            seq += 1
        ops.append(Op(OpKind.SETATTR, 0, seq, e.path, 0, e.attrs()))
        seq += 1
    return ops


def pack(root: Path, listing: Listing, picked: list[int], block: int, *, cap: int = 4 << 20,
         sparse: bool = False, seq: int = 1) -> tuple[list[Op], np.ndarray, int, int]:
    out = bytearray(cap)
    status = np.full(len(picked), 9, dtype=np.uint8)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        looked, used, nops, data = _smallfiles.pack(
            fd, listing.data, np.ascontiguousarray(listing.offsets[picked]), MAX, block, sparse,
            seq, out, status)
    finally:
        os.close(fd)
    ops = unpack_batch(bytes(out[:used]))
    assert len(ops) == nops
    return ops, status[:looked], looked, data


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, MAX + 100), min_size=1, max_size=12),
       block=st.sampled_from([4096, 10000, 65536]), seq=st.integers(1, 1 << 40))
def test_packed_files_are_the_ops_of_the_general_path(sizes: list[int], block: int,
                                                      seq: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "sub").mkdir()
        for k, size in enumerate(sizes):
            p = root / ("sub" if k % 2 else "") / f"f{k}"
            p.write_bytes(os.urandom(size))
            os.chmod(p, 0o640 + k % 8)
        listing = listing_of(root)
        kinds, lsizes = listing.columns()
        picked = np.flatnonzero(kinds == KIND_FILE).tolist()
        ops, status, looked, data = pack(root, listing, picked, block, seq=seq)
        assert looked == len(picked)
        small = [i for i in picked if lsizes[i] <= MAX]
        assert [i for i, s in zip(picked, status) if s == _smallfiles.PACKED] == small
        assert ops == expected(root, listing, small, block, seq)
        assert data == sum(len(op.data) for op in ops)


def test_what_is_no_longer_a_small_regular_file_is_left() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("gone", "fifo", "grown", "folder", "holes", "plain"):
            (root / name).write_bytes(b"x" * 100)
        listing = listing_of(root)
        (root / "gone").unlink()
        (root / "fifo").unlink()
        os.mkfifo(root / "fifo")  # opened without blocking, then refused
        (root / "grown").write_bytes(b"y" * (MAX + 1))
        (root / "folder").unlink()
        (root / "folder").mkdir()
        with open(root / "holes", "r+b") as f:
            f.truncate(1 << 20)
        names = [listing.path(i) for i in range(len(listing))]
        picked = [names.index(n) for n in (b"gone", b"fifo", b"grown", b"folder", b"holes", b"plain")]
        ops, status, looked, _ = pack(root, listing, picked, 4096, sparse=True)
        assert looked == 6
        assert status.tolist() == [1, 1, 1, 1, 1, 0]
        assert {op.path for op in ops} == {b"plain"}


def test_a_full_batch_stops_before_the_file_that_does_not_fit() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for k in range(10):
            (root / f"f{k}").write_bytes(os.urandom(10_000))
        listing = listing_of(root)
        picked = list(range(len(listing)))
        ops, status, looked, _ = pack(root, listing, picked, 65536, cap=35_000)
        assert looked == 3 and status.tolist() == [0, 0, 0]
        assert ops == expected(root, listing, picked[:3], 65536, 1)
        with pytest.raises(InvalidParameterError):  # not room for one
            pack(root, listing, picked, 65536, cap=5_000)
