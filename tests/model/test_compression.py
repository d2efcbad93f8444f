import os
import random
import struct

import lz4.block
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtcore import Compressor, StreamError
from dtcore.errors import InvalidParameterError, InvalidParameterTypeError
from dtcore.model.compression import HEADER_SIZE


def test_round_trip(sample, as_buffer):
    c = Compressor()
    p = c.compress(as_buffer(sample))
    assert bytes(c.decompress(p.header, p.body)) == sample
    assert bytes(c.decompress(bytes(p))) == sample


def test_rules():
    c = Compressor()
    log = b"2026-11-24 12:00:00 replication ok\n" * 100
    assert c.compress(log).compressed
    assert not c.compress(log[:1023]).compressed             # under MinCompressionFileSize
    assert c.compress(log[:1024]).compressed
    assert not c.compress(log, path="movie.MPEG").compressed  # SkipCompressionFileExt
    assert not c.compress(log, path=b"a/b.tgz").compressed
    assert c.compress(log, path="notes.txt").compressed
    random_block = os.urandom(65536)
    p = c.compress(random_block)
    assert not p.compressed and len(p.header) == HEADER_SIZE
    assert memoryview(p.body).obj is random_block  # raw bodies are not copied


def test_custom_rules():
    c = Compressor(min_size=0, skip_ext="log.txt")
    assert not c.compress(b"a" * 100, path="x.LOG").compressed
    assert c.compress(b"a" * 100, path="x.dat").compressed


def frame(data=b"abc" * 1000):
    return bytes(Compressor().compress(data))


@pytest.mark.parametrize("mutate,match", [
    (lambda f: f[:5], "cut short"),
    (lambda f: b"XX" + f[2:], "magic"),
    (lambda f: f[:2] + b"\x05" + f[3:], "flags"),
    (lambda f: f[:-1], "header says"),
    (lambda f: f + b"\0", "header says"),
    (lambda f: f[:4] + struct.pack("<I", 2**31) + f[8:], "limit"),
    (lambda f: f[:4] + struct.pack("<I", 10**7) + f[8:], "impossible"),
    (lambda f: f[:4] + struct.pack("<I", 2999) + f[8:], "corrupted|decoded"),
])
def test_damaged_frames(mutate, match):
    with pytest.raises(StreamError, match=match) as e:
        Compressor().decompress(mutate(frame()))
    assert e.value.code == -229


def test_raw_frame_with_disagreeing_sizes():
    f = bytearray(bytes(Compressor().compress(b"xy")))
    struct.pack_into("<I", f, 4, 3)
    with pytest.raises(StreamError, match="disagree"):
        Compressor().decompress(bytes(f))


def test_random_corruption_never_crashes():
    rng = random.Random(11)
    base = frame(b"".join(b"line %d of the log\n" % i for i in range(3000)))
    c = Compressor()
    for _ in range(2000):
        f = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            f[rng.randrange(len(f))] = rng.randrange(256)
        try:
            c.decompress(bytes(f[:rng.randrange(len(f) + 1)] if rng.random() < 0.3 else f))
        except StreamError:
            pass


def test_bad_arguments():
    with pytest.raises(InvalidParameterTypeError):
        Compressor().compress("text")
    with pytest.raises(InvalidParameterError):
        Compressor(min_size=-1)
    with pytest.raises(InvalidParameterError):
        Compressor(acceleration=0)
    with pytest.raises(InvalidParameterError):
        Compressor(max_payload=10).compress(b"x" * 11)


def test_compressed_body_is_plain_lz4_block():
    data = b"abcd" * 4096
    p = Compressor().compress(data)
    assert lz4.block.decompress(p.body, uncompressed_size=len(data)) == data


def test_compress_many_frames_each_block_by_the_rules():
    c = Compressor()
    blocks = [b"a" * 5000, os.urandom(5000), b"short", bytearray(b"b" * 3000), b""]
    many = c.compress_many(blocks)
    assert [p.compressed for p in many] == [True, False, False, True, False]
    assert many[1].body is blocks[1] and many[2].body is blocks[2]
    assert [bytes(c.decompress(*p)) for p in many] == [bytes(b) for b in blocks]
    assert not any(p.compressed for p in c.compress_many(blocks, path="x.zip"))
    with pytest.raises(InvalidParameterError):
        Compressor(max_payload=10).compress_many([b"x" * 11])


@given(st.lists(st.tuples(st.integers(0, 3 << 20), st.sampled_from(["zero", "text", "random"]),
                          st.sampled_from([bytes, bytearray, memoryview])), max_size=12))
@settings(max_examples=25, deadline=None)
def test_compress_many_round_trips_across_arena_slices(specs):
    """Blocks of up to 3 MiB, more than one 1 MiB scratch arena can hold in a
    call, in every buffer type: each decodes to its input."""
    rng = random.Random(len(specs))
    blocks = []
    for size, kind, wrap in specs:
        if kind == "zero":
            data = bytes(size)
        elif kind == "text":
            data = (b"INFO service started pid=%d\n" % rng.randrange(99999)) * (size // 27 + 1)
        else:
            data = rng.randbytes(size)
        blocks.append(wrap(data[:size]))
    many = Compressor().compress_many(blocks)
    assert len(many) == len(blocks)
    for block, p in zip(blocks, many):
        assert bytes(Compressor().decompress(p.header, p.body)) == bytes(block)
        if p.compressed:
            assert len(p.body) < len(block)
        else:
            assert memoryview(p.body).obj is (block.obj if isinstance(block, memoryview) else block)
