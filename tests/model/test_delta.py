import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dtcore
from dtcore._native import _delta
from dtcore.errors import InvalidParameterError, InvalidParameterTypeError, StreamError
from dtcore.model.delta import Delta


def weak_model(block: bytes) -> int:
    n = len(block)
    a = sum(block) & 0xFFFFFFFF
    b = sum((n - i) * x for i, x in enumerate(block)) & 0xFFFFFFFF
    return (b << 32) | a


@st.composite
def edited(draw):
    """A target file and a source made from it by random edits."""
    base = draw(st.binary(min_size=0, max_size=4000))
    if draw(st.booleans()):  # repetitive content exercises duplicate blocks
        base = (base[:50] or b"z") * draw(st.integers(1, 80))
    src = bytearray(base)
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["insert", "delete", "overwrite", "append", "truncate"]))
        pos = draw(st.integers(0, len(src)))
        chunk = draw(st.binary(min_size=1, max_size=300))
        if kind == "insert":
            src[pos:pos] = chunk
        elif kind == "delete":
            del src[pos:pos + len(chunk)]
        elif kind == "overwrite":
            src[pos:pos + len(chunk)] = chunk
        elif kind == "append":
            src += chunk
        else:
            del src[pos:]
    return base, bytes(src)


@given(edited(), st.sampled_from([1, 3, 16, 64, 100, 512]))
def test_round_trip_after_random_edits(case, block):
    target, source = case
    sig = dtcore.signature(target, block)
    d = dtcore.delta(sig, source)
    assert dtcore.apply_delta(target, d) == source
    ins = d.instructions
    assert ins[:, 1].sum() == len(source)
    assert ins[ins[:, 0] == -1, 1].sum() == len(d.literals)
    copies = ins[ins[:, 0] >= 0]
    assert ((copies[:, 0] + copies[:, 1]) <= len(target)).all()


@pytest.mark.parametrize("n", [63, 64, 65, 96, 1000, 65535, 65536, 65537, 1 << 20])
@pytest.mark.parametrize("fill", ["random", "all 0xff"])
def test_weak_sums_of_long_blocks_match_a_numpy_model(n, fill):
    # 32 bytes at a time with AVX2 where the CPU has it: the same bits as the
    # plain loop, up to the largest block and the largest byte values
    data = np.full(n, 255, np.uint8) if fill == "all 0xff" else \
        np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8)
    x = data.astype(np.uint64)
    a = int(x.sum()) & 0xFFFFFFFF
    b = int(((n - np.arange(n, dtype=np.uint64)) * x).sum()) & 0xFFFFFFFF
    weak, _ = _delta.signature(data.tobytes(), n)
    assert int(weak[0]) == (b << 32) | a


@given(st.binary(min_size=1, max_size=2000), st.integers(1, 300))
def test_weak_sums_match_model(data, block):
    weak, strong = _delta.signature(data, block)
    blocks = [data[i:i + block] for i in range(0, len(data), block)]
    assert weak.tolist() == [weak_model(b) for b in blocks]
    assert strong.tolist() == [dtcore.xxh3_64(b) for b in blocks]


def test_insertion_near_start_sends_little():
    target = os.urandom(4 << 20)
    source = target[:1000] + os.urandom(100) + target[1000:]
    sig = dtcore.signature(target, 65536)
    d = dtcore.delta(sig, source)
    # one damaged block plus the inserted bytes, not the 4 MiB the aligned compare sends
    assert len(d.literals) <= 65536 + 100
    assert len(d.instructions) == 2
    aligned = dtcore.differing_ranges(dtcore.block_checksums(source), sig.strong)
    assert (aligned[:, 1] - aligned[:, 0]).sum() == 65
    assert dtcore.apply_delta(target, d) == source


def test_identical_and_empty_files():
    data = os.urandom(300_000)
    d = dtcore.delta(dtcore.signature(data, 4096), data)
    assert d.instructions.tolist() == [[0, len(data)]] and not d.literals
    empty = dtcore.delta(dtcore.signature(b"", 4096), data)
    assert empty.instructions.tolist() == [[-1, len(data)]]
    assert dtcore.apply_delta(b"", empty) == data
    assert dtcore.apply_delta(data, dtcore.delta(dtcore.signature(data), b"")) == b""


def test_zero_file_copies_coalesce():
    zeros = bytes(1 << 20)
    d = dtcore.delta(dtcore.signature(zeros, 4096), zeros)
    assert d.instructions.tolist() == [[0, 1 << 20]]


def test_files_on_disk(tmp_path):
    t, s = tmp_path / "t", tmp_path / "s"
    t.write_bytes(os.urandom(500_000))
    s.write_bytes(t.read_bytes()[:200_000] + b"new" + t.read_bytes()[200_000:])
    d = dtcore.file_delta(dtcore.file_signature(t, 8192), s)
    assert dtcore.apply_delta(t.read_bytes(), d) == s.read_bytes()
    assert d.wire_bytes < 20_000


def _delta_with(instructions, literals=b"", size=None):
    ins = np.array(instructions, dtype=np.int64).reshape(-1, 2)
    size = int(ins[:, 1].sum()) if size is None else size
    return Delta(ins, literals, size, 0)


@pytest.mark.parametrize("ins,lits,size,match", [
    ([[0, 200]], b"", 200, "past the end of the target"),
    ([[95, 10]], b"", 10, "past the end of the target"),
    ([[2**62, 2**62]], b"", 2**62, "past the end"),
    ([[-1, 5]], b"abc", 5, "past the end of the literals"),
    ([[-1, 3]], b"abcdef", 3, "left over"),
    ([[-2, 3]], b"", 3, "unknown instruction"),
    ([[0, -4]], b"", 0, "negative"),
    ([[0, 10]], b"", 5, "past the end of the rebuilt file"),
    ([[0, 10]], b"", 20, "wrong size"),
])
def test_bad_instructions_raise_stream_error(ins, lits, size, match):
    with pytest.raises(StreamError, match=match) as e:
        dtcore.apply_delta(bytes(100), _delta_with(ins, lits, size), verify=False)
    assert e.value.code == -229


def test_hash_mismatch_is_detected():
    d = dtcore.delta(dtcore.signature(b"a" * 100, 16), b"b" * 100)
    forged = Delta(d.instructions, b"c" * 100, d.source_size, d.source_hash)
    with pytest.raises(StreamError, match="does not match"):
        dtcore.apply_delta(b"a" * 100, forged)


def test_bad_arguments():
    with pytest.raises(InvalidParameterError):
        dtcore.signature(b"abc", 0)
    with pytest.raises(InvalidParameterTypeError):
        dtcore.delta("not a signature", b"x")
    with pytest.raises(StreamError):
        dtcore.apply_delta(b"", Delta(np.zeros((2, 3), dtype=np.int64), b"", 0, 0))
    with pytest.raises(StreamError):
        dtcore.apply_delta(b"", Delta(np.zeros((1, 2), dtype=np.float64), b"", 0, 0))
    sig = dtcore.signature(b"x" * 100, 10)
    forged = dtcore.delta.__globals__["Signature"](10, 1000, sig.weak, sig.strong)
    with pytest.raises(InvalidParameterError, match="block count"):
        dtcore.delta(forged, b"x")
