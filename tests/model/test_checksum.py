import os

import numpy as np
import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

import dtcore
from dtcore._native import _checksum
from dtcore.errors import DTError, FileAccessError, InvalidParameterError, InvalidParameterTypeError
from threads import run_threads

IMPLS = {1: "scalar", 2: "sse2", 3: "avx2"}


@pytest.fixture(params=sorted(IMPLS))
def impl(request):
    got = _checksum.select_impl(request.param)
    try:
        if got != request.param:
            pytest.skip(f"{IMPLS[request.param]} is not supported on this CPU")
        yield request.param
    finally:
        _checksum.select_impl(0)


def oracle_blocks(data: bytes, block: int) -> list[int]:
    return [xxhash.xxh3_64_intdigest(data[i:i + block]) for i in range(0, len(data), block)]


@given(st.binary(max_size=5000))
def test_xxh3_matches_reference_library(data):
    assert dtcore.xxh3_64(data) == xxhash.xxh3_64_intdigest(data)


@pytest.mark.parametrize("n", [0, 1, 3, 4, 8, 9, 16, 17, 128, 129, 240, 241, 1023, 1024, 1025,
                               1088, 4096, 65536, 1 << 20])
def test_xxh3_every_length_class_every_impl(impl, n):
    data = os.urandom(n)
    assert dtcore.xxh3_64(data) == xxhash.xxh3_64_intdigest(data)


def test_block_checksums_match_per_block_reference(sample, as_buffer):
    for block in (1, 7, 4096, 65536):
        if block == 1 and len(sample) > 5000:
            continue
        got = dtcore.block_checksums(as_buffer(sample), block)
        assert got.dtype == np.uint64
        assert got.tolist() == oracle_blocks(sample, block)


@given(st.binary(max_size=3000), st.integers(1, 600))
def test_block_checksums_property(data, block):
    assert dtcore.block_checksums(data, block).tolist() == oracle_blocks(data, block)


def test_file_checksums_equal_buffer_checksums(tmp_path, sample):
    p = tmp_path / "f"
    p.write_bytes(sample)
    for block in (4096, 65536, 1048576):
        assert np.array_equal(dtcore.file_checksums(p, block), dtcore.block_checksums(sample, block))


def test_file_checksums_offset_length_and_fd(tmp_path):
    data = os.urandom(1_000_000)
    p = tmp_path / "f"
    p.write_bytes(data)
    with open(p, "rb") as f:
        got = dtcore.file_checksums(f.fileno(), 4096, offset=8192, length=100_000)
    assert got.tolist() == oracle_blocks(data[8192:108192], 4096)


def test_file_that_shrinks_is_an_error_not_garbage(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x" * 10_000)
    with pytest.raises(FileAccessError, match="ended early"):
        dtcore.file_checksums(p, 4096, length=20_000)


def test_missing_file(tmp_path):
    with pytest.raises(FileAccessError) as e:
        dtcore.file_checksums(tmp_path / "nope")
    assert isinstance(e.value, OSError) and e.value.errno == 2


@pytest.mark.parametrize("block", [0, -1, 1048577, 1 << 40])
def test_block_size_out_of_range(block):
    with pytest.raises(InvalidParameterError, match="MirrorChunkSize") as e:
        dtcore.block_checksums(b"abc", block)
    assert e.value.code == -101 and isinstance(e.value, ValueError)


@pytest.mark.parametrize("bad", ["text", 12, None, [1, 2], 1.5])
def test_wrong_types(bad):
    with pytest.raises(InvalidParameterTypeError) as e:
        dtcore.block_checksums(bad)
    assert isinstance(e.value, TypeError) and isinstance(e.value, DTError)


def test_non_contiguous_buffer_rejected():
    arr = np.arange(100, dtype=np.uint8)[::2]
    with pytest.raises(InvalidParameterTypeError, match="contiguous"):
        dtcore.xxh3_64(arr)


def test_accepts_numpy_and_wide_buffers():
    arr = np.arange(1000, dtype=np.uint32)
    assert dtcore.xxh3_64(arr) == xxhash.xxh3_64_intdigest(arr.tobytes())


def ranges_model(src, tgt):
    out, start = [], None
    for i in range(len(src)):
        d = i >= len(tgt) or src[i] != tgt[i]
        if d and start is None:
            start = i
        if not d and start is not None:
            out.append([start, i])
            start = None
    if start is not None:
        out.append([start, len(src)])
    return out


@given(st.lists(st.integers(0, 3), max_size=60), st.lists(st.integers(0, 3), max_size=60))
def test_differing_ranges_against_model(src, tgt):
    got = dtcore.differing_ranges(np.array(src, dtype=np.uint64), np.array(tgt, dtype=np.uint64))
    assert got.dtype == np.int64 and got.shape[1:] == (2,)
    assert got.tolist() == ranges_model(src, tgt)


def test_threads_checksum_in_parallel_and_agree(tmp_path):
    files = []
    for i in range(4):
        p = tmp_path / f"f{i}"
        p.write_bytes(os.urandom(3_000_000))
        files.append(p)
    expected = [dtcore.file_checksums(p) for p in files]
    results = [None] * 4

    def work(i):
        results[i] = dtcore.file_checksums(files[i])

    run_threads(work, 4)
    assert all(np.array_equal(a, b) for a, b in zip(results, expected))
