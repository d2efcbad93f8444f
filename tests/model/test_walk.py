"""The native walk and manifest comparison (csrc/dt_walk.c) against a
plain-Python model built from os.lstat, xxhash and dicts."""
from __future__ import annotations

import os
import socket
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from dtcore.errors import StreamError
from dtcore.model.manifest import (
    HASHED,
    NEWER,
    SAME_HASH,
    SAME_KIND,
    SAME_MODE,
    SAME_MTIME,
    SAME_OWNER,
    SAME_SIZE,
    THERE,
    Listing,
    Parts,
    listing_of,
    order_key,
)
from dtcore.model.repset import ReplicationSet

names = st.sampled_from(["a", "b", "B", "z.txt", "é", "sub", "x y", ".hidden"])
trees = st.recursive(
    st.one_of(st.binary(max_size=300), st.just("link")),
    lambda kids: st.dictionaries(names, kids, max_size=4), max_leaves=25)


def _build(root: Path, tree: object) -> None:
    for name, kid in tree.items():  # type: ignore[attr-defined]
        p = root / name
        if isinstance(kid, dict):
            p.mkdir()
            _build(p, kid)
        elif kid == "link":
            os.symlink("../elsewhere", p)
        else:
            p.write_bytes(kid)


def _model(root: Path, hash_below: int) -> list[tuple]:
    """What the walk must list, in its order: a folder's entries by name
    bytes, then each sub-folder's contents."""
    out: list[tuple] = []

    def visit(d: Path, prefix: bytes) -> None:
        names = sorted(os.fsencode(n) for n in os.listdir(d))
        subdirs = []
        for n in names:
            p = d / os.fsdecode(n)
            s = p.lstat()
            kind = "d" if stat.S_ISDIR(s.st_mode) else "l" if stat.S_ISLNK(s.st_mode) else "f"
            size = s.st_size if kind == "f" else 0
            digest = xxhash.xxh3_64_intdigest(p.read_bytes()) if kind == "f" and size < hash_below else -1
            out.append((prefix + n, kind, size, s.st_mtime_ns, stat.S_IMODE(s.st_mode), s.st_uid,
                        s.st_gid, s.st_ino, s.st_dev, s.st_nlink, s.st_atime_ns, digest))
            if kind == "d":
                subdirs.append((p, prefix + n + b"/"))
        for p, pre in subdirs:
            visit(p, pre)

    visit(root, b"")
    return out


@settings(max_examples=80, deadline=None)
@given(trees, st.sampled_from([0, 1, 150, 1 << 20]))
def test_walk_lists_what_lstat_sees(tree, hash_below):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _build(root, tree if isinstance(tree, dict) else {"only": tree})
        expected = _model(root, hash_below)  # before the walk, which may move atimes
        listing = listing_of(root, None, hash_below, ids=True)
        got = [tuple(e) for e in listing]
        assert [g[:10] + g[11:] for g in got] == [e[:10] + e[11:] for e in expected]
        kinds, sizes = listing.columns()
        assert sizes.tolist() == [e[2] for e in expected]
        assert kinds.tolist() == [{"f": 1, "d": 2, "l": 3}[e[1]] for e in expected]


@settings(max_examples=60, deadline=None)
@given(trees, st.integers(1, 400))
def test_a_walk_in_parts_lists_what_the_whole_walk_lists(tree, part):
    """Parts of any size, joined, are the whole walk; every walk's order is
    the one order_key gives, which Listing.parse insists on."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _build(root, tree if isinstance(tree, dict) else {"only": tree})
        paths = [e[0] for e in _model(root, 0)]
        parts = list(Parts(str(root), part))
        assert [p.path(i) for p in parts for i in range(len(p))] == paths
        assert all(len(p.data) < part + 48 + 4096 for p in parts)
        assert paths == sorted(paths, key=order_key)
        whole = b"".join(bytes(p.data) for p in parts)
        assert len(Listing.parse(whole)) == len(paths)


component = st.sampled_from([b"a", b"a-b", b"ab", b"b", b"a.x", b"\xff", b"0"])
path_sets = st.sets(st.lists(component, min_size=1, max_size=4).map(b"/".join), min_size=2,
                    max_size=30)


def _manifest(paths: list[bytes]) -> bytes:
    return b"".join(len(p).to_bytes(2, "little") + b"\x01" + b"\x00" * 45 + p for p in paths)


@settings(max_examples=200, deadline=None)
@given(path_sets, st.data())
def test_a_manifest_out_of_walk_order_is_refused(paths, data):
    """The native check of walk order agrees with order_key: sorted by it a
    manifest is taken, with any two entries swapped (or one twice) it is not."""
    ordered = sorted(paths, key=order_key)
    assert len(Listing.parse(_manifest(ordered))) == len(ordered)
    i = data.draw(st.integers(0, len(ordered) - 2))
    j = data.draw(st.integers(i + 1, len(ordered) - 1))
    swapped = ordered[:i] + [ordered[j]] + ordered[i + 1:j] + [ordered[i]] + ordered[j + 1:]
    with pytest.raises(StreamError, match="walk order"):
        Listing.parse(_manifest(swapped))
    with pytest.raises(StreamError, match="walk order"):
        Listing.parse(_manifest(ordered[:i + 1] + ordered[i:]))


def _pair(tmp: Path) -> tuple[Path, Path]:
    ours, theirs = tmp / "ours", tmp / "theirs"
    for root in (ours, theirs):
        (root / "d").mkdir(parents=True)
        (root / "same").write_bytes(b"same content")
        (root / "d" / "inner").write_bytes(b"x" * 100)
        (root / "kind").mkdir()
    (ours / "kind").rmdir()
    (ours / "kind").write_bytes(b"a file here, a folder there")
    (ours / "only-ours").write_bytes(b"new")
    (theirs / "only-theirs").write_bytes(b"orphan")
    (ours / "size").write_bytes(b"12345")
    (theirs / "size").write_bytes(b"1234")
    (ours / "content").write_bytes(b"abcd")
    (theirs / "content").write_bytes(b"abce")
    t = 1_700_000_000_000_000_000
    for root in (ours, theirs):
        for p in root.rglob("*"):
            os.utime(p, ns=(t, t), follow_symlinks=False)
    os.utime(theirs / "content", ns=(t + 5, t + 5))
    os.chmod(theirs / "same", 0o600)
    os.chmod(ours / "same", 0o644)
    return ours, theirs


def test_compare_flags_each_difference(tmp_path):
    ours_dir, theirs_dir = _pair(tmp_path)
    ours = listing_of(ours_dir, None, 1 << 10)
    theirs = Listing.parse(listing_of(theirs_dir, None, 1 << 10).data)  # as received
    flags, match = ours.compare(theirs)
    got = {ours.path(i): (int(f), theirs.path(int(m)) if m >= 0 else None)
           for i, (f, m) in enumerate(zip(flags, match))}
    full = THERE | SAME_KIND | SAME_SIZE | SAME_MTIME | SAME_MODE | SAME_OWNER | NEWER
    assert got[b"d/inner"] == (full | HASHED | SAME_HASH, b"d/inner")
    assert got[b"same"][0] == full & ~SAME_MODE | HASHED | SAME_HASH
    assert got[b"only-ours"] == (0, None)
    assert got[b"kind"][0] & (THERE | SAME_KIND) == THERE
    assert got[b"size"][0] & (SAME_SIZE | SAME_HASH) == 0
    assert got[b"content"][0] & (SAME_SIZE | SAME_MTIME | SAME_HASH | NEWER) == SAME_SIZE | NEWER
    matched = np.zeros(len(theirs), bool)
    matched[match[match >= 0]] = True
    assert [theirs.path(j) for j in np.flatnonzero(~matched)] == [b"only-theirs"]


def test_skip_names_only_a_top_level_entry(tmp_path):
    (tmp_path / ".dtcore").mkdir()
    (tmp_path / "d" / ".dtcore").mkdir(parents=True)
    paths = [e.path for e in listing_of(tmp_path, b".dtcore")]
    assert paths == [b"d", b"d/.dtcore"]


@pytest.mark.parametrize("data", [b"\x05", b"\x00" * 48, b"\x01\x00\x09" + b"\x00" * 46,
                                  b"\x08\x00\x01" + b"\x00" * 45 + b"abc"])
def test_a_broken_manifest_is_refused(data):
    with pytest.raises(StreamError):
        Listing.parse(data)


def test_a_hostile_path_in_a_manifest_is_refused_when_taken_out(tmp_path):
    (tmp_path / "ok").write_bytes(b"")
    header = bytes(listing_of(tmp_path).data[:48])  # a two-byte name: swap ".." in
    bad = Listing.parse(header + b"..")
    with pytest.raises(Exception, match="'..'"):
        bad.entry(0)


def test_special_files_are_named_and_filtered_by_the_rules(tmp_path):
    """Pipes and sockets are not listed but named, so a mirror can say what
    it left out; the rules decide which of them count."""
    (tmp_path / "keep").mkdir()
    (tmp_path / "out").mkdir()
    os.mkfifo(tmp_path / "keep" / "pipe")
    os.mkfifo(tmp_path / "out" / "pipe")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "sock"))
        listing = listing_of(tmp_path)
        assert sorted(listing.special()) == [("fifo", b"keep/pipe"), ("fifo", b"out/pipe"),
                                             ("socket", b"sock")]
        assert all(not listing.path(i).endswith((b"pipe", b"sock")) for i in range(len(listing)))
        kept = ReplicationSet(tmp_path, ["", "out,Exc,Rec"]).listing()
        assert sorted(kept.special()) == [("fifo", b"keep/pipe"), ("socket", b"sock")]
