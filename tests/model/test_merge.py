import os
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

import dtcore
from dtcore._twin.merge import merge_ops
from dtcore.model.ops import Attrs, Op, OpKind, merge_batch, merge_bound, pack_batch, unpack_batch
from fsmodel import FsModel
from threads import run_threads

PATHS = [b"a", b"b", b"c", b"d/e"]


@st.composite
def streams(draw):
    """Op streams over a few paths whose file ids follow the files: a rename
    carries the id to the new path, a deleted and recreated path gets a new one."""
    ids = {p: i for i, p in enumerate(PATHS)}
    next_id = len(PATHS)
    out = []
    for seq in range(draw(st.integers(0, 60))):
        p = draw(st.sampled_from(PATHS))
        kind = draw(st.sampled_from([OpKind.WRITE] * 6 + [
            OpKind.TRUNCATE, OpKind.SETATTR, OpKind.RENAME, OpKind.DELETE, OpKind.CREATE,
            OpKind.MKDIR, OpKind.RMDIR]))
        if kind == OpKind.WRITE:
            off = draw(st.integers(0, 300))
            out.append(Op(kind, ids[p], seq, p, off, draw(st.binary(max_size=120))))
        elif kind == OpKind.TRUNCATE:
            out.append(Op(kind, ids[p], seq, p, draw(st.integers(0, 400))))
        elif kind == OpKind.SETATTR:
            out.append(Op(kind, ids[p], seq, p, 0, Attrs(Attrs.MODE, seq).pack()))
        elif kind == OpKind.RENAME:
            q = draw(st.sampled_from(PATHS))
            out.append(Op(kind, ids[p], seq, p, 0, q))
            if p != q:
                ids[q], ids[p] = ids[p], next_id
                next_id += 1
        elif kind in (OpKind.DELETE, OpKind.CREATE):
            out.append(Op(kind, ids[p], seq, p, 0o644))
            ids[p] = next_id
            next_id += 1
        else:
            out.append(Op(kind, 1000 + seq, seq, b"dir%d" % (seq % 2), 0o755 if kind == OpKind.MKDIR else 0))
    return out


@given(streams(), st.sampled_from([1, 7, 64, 65536]))
def test_merged_stream_gives_the_same_files(ops, max_chunk):
    merged = unpack_batch(merge_batch(pack_batch(ops), max_chunk))
    assert FsModel().run(merged) == FsModel().run(ops)
    assert all(len(op.data) <= max_chunk for op in merged if op.kind == OpKind.WRITE)
    assert [op for op in merged if op.kind != OpKind.WRITE] == [
        op for op in ops if op.kind != OpKind.WRITE]


@given(streams(), st.sampled_from([1, 7, 64, 65536]))
def test_native_merge_equals_python_twin_byte_for_byte(ops, max_chunk):
    native = merge_batch(pack_batch(ops), max_chunk)
    assert native == pack_batch(merge_ops(ops, max_chunk))


@given(st.lists(st.tuples(st.sampled_from([0, 1, 2]), st.sampled_from([0, 70_000, 3_000_000]),
                          st.integers(0, 300), st.binary(min_size=1, max_size=200)), max_size=80),
       st.sampled_from([1, 64, 65536]))
def test_scattered_out_of_order_writes_equal_python_twin(writes, max_chunk):
    """Writes far apart in one file take the sorted-list path rather than the
    dense image one; both must give the twin's output."""
    ops = [Op(OpKind.WRITE, f, seq, b"f%d" % f, base + off, data)
           for seq, (f, base, off, data) in enumerate(writes)]
    native = merge_batch(pack_batch(ops), max_chunk)
    assert native == pack_batch(merge_ops(ops, max_chunk))


def test_sequential_writes_become_max_chunks():
    ops = [Op(OpKind.WRITE, 9, i, b"big", i * 4096, os.urandom(4096)) for i in range(100)]
    merged = unpack_batch(merge_batch(pack_batch(ops)))
    assert [(op.arg, len(op.data)) for op in merged] == [
        (i * 65536, 65536) for i in range(6)] + [(6 * 65536, 409600 - 6 * 65536)]
    assert b"".join(op.data for op in merged) == b"".join(op.data for op in ops)
    assert {op.seq for op in merged} == {99}


def test_newest_bytes_win_on_overlap():
    ops = [Op(OpKind.WRITE, 1, 1, b"f", 0, b"aaaaaaaaaa"),
           Op(OpKind.WRITE, 1, 2, b"f", 3, b"bbb"),
           Op(OpKind.WRITE, 1, 3, b"f", 8, b"cccc"),
           Op(OpKind.WRITE, 1, 4, b"f", 20, b"dd")]
    merged = unpack_batch(merge_batch(pack_batch(ops)))
    assert [(op.arg, op.data) for op in merged] == [(0, b"aaabbbaacccc"), (20, b"dd")]


def test_random_overlapping_writes_large_batch():
    rng = random.Random(3)
    ops = [Op(OpKind.WRITE, f, i, b"file%03d" % f, rng.randrange(2048), rng.randbytes(64))
           for i, f in enumerate(rng.randrange(300) for _ in range(20000))]
    merged = unpack_batch(merge_batch(pack_batch(ops)))
    assert FsModel().run(merged) == FsModel().run(ops)
    assert len(merged) < len(ops) / 5


def test_merge_in_threads():
    batches = [pack_batch([Op(OpKind.WRITE, t, i, b"t%d" % t, i * 100, bytes([t]) * 150)
                                  for i in range(2000)]) for t in range(4)]
    expected = [merge_batch(b) for b in batches]
    got = [None] * 4

    def work(i):
        for _ in range(20):
            got[i] = merge_batch(batches[i])

    run_threads(work, 4)
    assert got == expected


def test_empty_batch_and_zero_length_writes():
    assert unpack_batch(merge_batch(pack_batch([]))) == []
    ops = [Op(OpKind.WRITE, 1, 1, b"f", 100, b"")]
    assert unpack_batch(merge_batch(pack_batch(ops))) == []


def test_merge_into_a_reused_buffer():
    ops = [Op(OpKind.WRITE, 1, i, b"f", i * 10, b"x" * 20) for i in range(50)]
    batch = pack_batch(ops)
    buf = bytearray(merge_bound(batch))
    for _ in range(3):
        got = merge_batch(batch, into=buf)
        assert bytes(got) == bytes(merge_batch(batch))
    with pytest.raises(dtcore.InvalidParameterError, match="smaller"):
        merge_batch(batch, into=bytearray(10))
    with pytest.raises(dtcore.InvalidParameterTypeError, match="writable"):
        merge_batch(batch, into=bytes(len(buf)))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_large_mixed_streams_against_model(seed):
    rng = random.Random(seed)
    ops, ids = [], {}
    for seq in range(60_000):
        p = b"f%d" % rng.randrange(50)
        fid = ids.setdefault(p, len(ids) + 1000 * seq)
        r = rng.random()
        if r < 0.97:
            ops.append(Op(OpKind.WRITE, fid, seq, p, rng.randrange(200_000),
                          rng.randbytes(rng.choice([1, 64, 4096, 70_000]))))
        elif r < 0.985:
            ops.append(Op(OpKind.TRUNCATE, fid, seq, p, rng.randrange(300_000)))
        else:
            ops.append(Op(OpKind.DELETE, fid, seq, p))
            del ids[p]
    for chunk in (4096, 131072):
        merged = unpack_batch(merge_batch(pack_batch(ops), chunk))
        assert FsModel().run(merged) == FsModel().run(ops)


def test_writes_made_moot_are_not_sent():
    temp = [Op(OpKind.CREATE, 5, 0, b"tmp", 0o600)]
    temp += [Op(OpKind.WRITE, 5, i, b"tmp", i * 100, b"t" * 100) for i in range(1, 50)]
    temp += [Op(OpKind.DELETE, 5, 50, b"tmp")]
    merged = unpack_batch(merge_batch(pack_batch(temp)))
    assert [op.kind for op in merged] == [OpKind.CREATE, OpKind.DELETE]
    cut = [Op(OpKind.WRITE, 6, 1, b"f", 0, b"a" * 1000), Op(OpKind.WRITE, 6, 2, b"f", 5000, b"b" * 10),
           Op(OpKind.TRUNCATE, 6, 3, b"f", 600)]
    merged = unpack_batch(merge_batch(pack_batch(cut)))
    assert [(op.kind, op.arg, len(op.data)) for op in merged] == [
        (OpKind.WRITE, 0, 600), (OpKind.TRUNCATE, 600, 0)]
    # a file that existed before the batch may have other names: nothing is moot
    kept = [Op(OpKind.WRITE, 7, 1, b"old", 0, b"x"), Op(OpKind.DELETE, 7, 2, b"old")]
    assert unpack_batch(merge_batch(pack_batch(kept))) == kept
