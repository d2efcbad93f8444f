"""A watched file's changed blocks against a plain-Python oracle: applying
the reported writes and truncate to the last known copy gives the file as
it is now, and only blocks that changed are sent."""
import os

from hypothesis import given
from hypothesis import strategies as st

from dtcore.source.intake.blocksums import BLOCK, FileSums

edits = st.lists(st.one_of(
    st.tuples(st.just("write"), st.integers(0, 60_000), st.binary(min_size=1, max_size=9000)),
    st.tuples(st.just("truncate"), st.integers(0, 60_000))), max_size=8)


def _apply(old: bytes, ops) -> bytes:
    out = bytearray(old)
    for op in ops:
        if op[0] == "truncate":
            del out[op[1]:]
            out += bytes(op[1] - len(out))
        else:
            _, off, data = op
            out[len(out):off] = bytes(max(0, off - len(out)))
            out[off:off + len(data)] = data
    return bytes(out)


@given(first=st.binary(max_size=50_000), rounds=st.lists(edits, min_size=1, max_size=4))
def test_the_reported_ops_rebuild_the_file(tmp_path_factory, first, rounds):
    path = tmp_path_factory.mktemp("f") / "file"
    path.write_bytes(first)
    f = FileSums(None, known_empty=True)
    copy = b""
    with open(path, "r+b") as fh:
        for edit in [[], *rounds]:
            for op in edit:
                if op[0] == "truncate":
                    fh.truncate(op[1])
                else:
                    fh.seek(op[1])
                    fh.write(op[2])
            fh.flush()
            now = path.read_bytes()
            ops = f.diff(fh.fileno(), len(now), 0.0)
            # at most the blocks whose bytes differ from the last copy go, and
            # at least every byte that differs (zeros past its end may stay a hole)
            differ = [i for i in range(0, len(now), BLOCK) if now[i:i + BLOCK] != copy[i:i + BLOCK]]
            most = sum(len(now[i:i + BLOCK]) for i in differ)
            least = sum(1 for j, b in enumerate(now)
                        if (copy[j] != b if j < len(copy) else b != 0))
            copy = _apply(copy, ops)
            assert copy == now
            assert least <= sum(len(op[2]) for op in ops if op[0] == "write") <= most

def test_an_unchanged_file_sends_nothing(tmp_path):
    path = tmp_path / "same"
    path.write_bytes(os.urandom(100_000))
    f = FileSums(None, known_empty=True)
    with open(path, "rb") as fh:
        assert len(f.diff(fh.fileno(), 100_000, 0.0)) > 0
        assert f.diff(fh.fileno(), 100_000, 0.0) == []


def test_a_sparse_file_grows_by_its_data_only(tmp_path):
    path = tmp_path / "sparse"
    with open(path, "wb") as fh:
        fh.truncate(64 << 20)
        fh.seek(10 << 20)
        fh.write(b"island" * 1000)
    f = FileSums(None, known_empty=True)
    with open(path, "rb") as fh:
        ops = f.diff(fh.fileno(), 64 << 20, 0.0)
    sent = sum(len(op[2]) for op in ops if op[0] == "write")
    assert sent <= 3 * BLOCK
    assert ops[-1] == ("truncate", 64 << 20)
    assert _apply(b"", ops) == path.read_bytes()


def test_an_append_sends_only_the_appended_bytes(tmp_path):
    path = tmp_path / "app.log"
    path.write_bytes(b"first line\n" * 1000)  # 11,000 bytes: the last block is partial
    f = FileSums(None, known_empty=True)
    with open(path, "ab") as fh, open(path, "rb") as reader:
        f.diff(reader.fileno(), 11_000, 0.0)
        fh.write(b"appended\n")
        fh.flush()
        ops = f.diff(reader.fileno(), 11_009, 0.0)
    assert [(op[0], op[1], bytes(op[2])) for op in ops] == [("write", 11_000, b"appended\n")]
