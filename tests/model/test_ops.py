import os
import random
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dtcore.errors import InvalidParameterError, InvalidParameterTypeError, StreamError
from dtcore.model import xattrs
from dtcore.model.ops import (
    Attrs,
    Op,
    OpKind,
    decode_patch,
    encode_patch,
    merge_batch,
    pack_batch,
    patch_size,
    scan_batch,
    unpack_batch,
)

names = st.binary(min_size=1, max_size=40).filter(lambda b: b"\0" not in b)


@st.composite
def ops(draw):
    kind = draw(st.sampled_from(list(OpKind)))
    fid, seq, path = draw(st.integers(0, 2**64 - 1)), draw(st.integers(0, 2**64 - 1)), draw(names)
    arg, data = 0, b""
    if kind == OpKind.WRITE:
        arg, data = draw(st.integers(0, 2**40)), draw(st.binary(max_size=300))
    elif kind == OpKind.TRUNCATE:
        arg = draw(st.integers(0, 2**40))
    elif kind in (OpKind.CREATE, OpKind.MKDIR):
        arg = draw(st.integers(0, 0o7777))
    elif kind == OpKind.SETATTR:
        data = Attrs(Attrs.MODE | Attrs.TIMES, 0o644, 0, 0, 1, 2).pack()
    elif kind in (OpKind.RENAME, OpKind.SYMLINK, OpKind.LINK):
        data = draw(names)
    elif kind == OpKind.PATCH:
        arg, data = draw(st.integers(0, 2**40)), draw(st.binary(min_size=16, max_size=100))
    elif kind == OpKind.XATTR:
        data = xattrs.pack(draw(st.dictionaries(names, st.binary(max_size=40), max_size=4)))
    return Op(kind, fid, seq, path, arg, data)


@given(st.lists(ops(), max_size=30))
def test_pack_unpack_round_trip(items):
    batch = pack_batch(items)
    assert len(batch) % 8 == 0
    assert unpack_batch(batch) == items
    assert scan_batch(batch).count == len(items)


@given(st.lists(ops() | st.builds(lambda d, off: Op(OpKind.WRITE, 1, 2, b"big", off, d),
                                  st.binary(min_size=400, max_size=3000), st.integers(0, 2**40)),
                max_size=20))
def test_lending_unpack_gives_views_of_large_writes_and_the_same_ops(items):
    batch = pack_batch(items)
    lent = unpack_batch(batch, lend=True)
    assert lent == unpack_batch(batch) == items
    for op in lent:
        if op.kind == OpKind.WRITE and len(op.data) >= 512:
            assert isinstance(op.data, memoryview) and op.data.readonly
            # a view, not a copy: its bytes lie inside the batch's buffer
            base = np.frombuffer(batch, np.uint8).ctypes.data
            at = np.frombuffer(op.data, np.uint8).ctypes.data - base
            assert 0 < at <= len(batch) - len(op.data)
        else:
            assert isinstance(op.data, bytes)


@given(st.dictionaries(st.binary(min_size=1, max_size=20).filter(lambda b: b"\0" not in b),
                       st.binary(max_size=100), max_size=8))
def test_xattr_sets_round_trip_and_broken_ones_are_refused(attrs):
    data = xattrs.pack(attrs)
    assert xattrs.unpack(data) == attrs
    for broken in (data[:-1], data + b"x"):
        with pytest.raises(StreamError):
            xattrs.unpack(broken)


def test_attrs_round_trip():
    a = Attrs(Attrs.OWNER, 0, 1000, 1000, -5, 10**18)
    assert Attrs.unpack(a.pack()) == a


def good_batch():
    return pack_batch([
        Op(OpKind.CREATE, 1, 1, b"dir/a", 0o644),
        Op(OpKind.WRITE, 1, 2, b"dir/a", 0, b"hello"),
        Op(OpKind.RENAME, 1, 3, b"dir/a", 0, b"dir/b"),
    ])


def set_u32(b, off, v):
    b = bytearray(b)
    struct.pack_into("<I", b, off, v)
    return b


@pytest.mark.parametrize("mutate,match", [
    (lambda b: b[:10], "shorter than its header"),
    (lambda b: set_u32(b, 0, 0xDEADBEEF), "bad magic"),
    (lambda b: b[:4] + b"\x07\x00" + b[6:], "version"),
    (lambda b: b[:-8], "length does not match"),
    (lambda b: set_u32(b, 8, 4), "runs past|cut short"),
    (lambda b: set_u32(b, 8, 2), "left after the last record"),
    (lambda b: set_u32(b, 16, 4096), "record length"),
    (lambda b: b[:20] + b"\x63" + b[21:], "unknown op kind"),
    (lambda b: b[:21] + b"\x01" + b[22:], "reserved"),
    (lambda b: b[:56] + b"\x00" + b[57:], "NUL"),
])
def test_malformed_batches(mutate, match):
    with pytest.raises(StreamError, match=match) as e:
        unpack_batch(mutate(good_batch()))
    assert e.value.code == -229


def test_random_corruption_never_crashes():
    base = bytes(pack_batch([Op(OpKind.WRITE, i, i, b"f%d" % i, i * 7, os.urandom(i))
                                    for i in range(40)]))
    rng = random.Random(7)
    for _ in range(3000):
        b = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        if rng.random() < 0.3:
            b = b[:rng.randrange(len(b))]
        try:
            unpack_batch(b)
            merge_batch(b)
        except StreamError:
            pass


@pytest.mark.parametrize("op,err", [
    (Op(OpKind.WRITE, 1, 1, b"", 0, b"x"), StreamError),          # empty path
    (Op(OpKind.WRITE, 1, 1, b"a\0b", 0, b"x"), StreamError),      # NUL in path
    (Op(OpKind.TRUNCATE, 1, 1, b"a", 0, b"xx"), StreamError),     # data on truncate
    (Op(OpKind.SETATTR, 1, 1, b"a", 0, b"short"), StreamError),   # wrong attrs size
    (Op(OpKind.RENAME, 1, 1, b"a", 0, b""), StreamError),         # rename to nothing
    (Op(OpKind.WRITE, 1, 1, b"a", 2**62, b"x"), StreamError),     # offset overflow
    (Op(OpKind.WRITE, -1, 1, b"a", 0, b"x"), InvalidParameterError),
    (Op(OpKind.WRITE, 1, 1, b"a", -5, b"x"), InvalidParameterError),
    (Op(OpKind.WRITE, 1, 1, "a", 0, b"x"), InvalidParameterTypeError),
    (Op(OpKind.WRITE, 1, 1, b"a" * 70000, 0, b"x"), InvalidParameterError),
])
def test_bad_ops_rejected_when_packing(op, err):
    with pytest.raises(err):
        pack_batch([op])


def test_wrong_types():
    with pytest.raises(InvalidParameterTypeError):
        pack_batch([42])
    with pytest.raises(InvalidParameterTypeError):
        unpack_batch("batch")
    with pytest.raises(InvalidParameterError, match="MaxWriteChunkSize"):
        merge_batch(good_batch(), 131073)
    with pytest.raises(InvalidParameterError, match="MaxWriteChunkSize"):
        merge_batch(good_batch(), 0)


@given(st.lists(st.tuples(st.integers(-1, 1 << 40), st.integers(0, 1 << 30)), max_size=40),
       st.integers(0, (1 << 64) - 1), st.binary(max_size=300))
def test_patch_payload_round_trip(insns, source_hash, literals):
    arr = np.array(insns, dtype=np.int64).reshape(-1, 2)
    data = encode_patch(arr, source_hash, literals)
    assert len(data) == patch_size(arr, literals)
    got, want, lit = decode_patch(data)
    assert got.tolist() == arr.tolist() and want == source_hash and bytes(lit) == literals
    for cut in (0, 8, 15):
        with pytest.raises(StreamError):
            decode_patch(data[:cut])
    if insns:
        with pytest.raises(StreamError, match="claims"):
            decode_patch(data[:16 + 16 * len(insns) - 1])
