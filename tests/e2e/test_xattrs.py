"""ExtendedAttributes: off by default (the guide's 0); with 1, mirrors,
replication and restore carry each entry's whole set of extended
attributes (user and, as root, trusted ones too), removals included."""
from __future__ import annotations

import os
import time

import pytest

from dtcore.engine import Engine
from dtcore.model import xattrs
from dtcore.model.repset import ReplicationSet
from dtcore.source.mirror import DIFFERENCE, FULL

pytestmark = pytest.mark.timeout(90)
SECRET = "xattr-test-secret"


def _tree(root):
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.txt").write_bytes(b"a" * 5000)
    (root / "b.bin").write_bytes(os.urandom(200_000))
    os.setxattr(root / "docs" / "a.txt", "user.colour", b"blue")
    os.setxattr(root / "docs" / "a.txt", "user.tag", b"x" * 300)
    os.setxattr(root / "docs", "user.project", b"apollo")
    os.setxattr(root / "b.bin", "trusted.origin", b"lab")


def _sets(root):
    return {str(p.relative_to(root)): xattrs.read(str(p)) for p in [root, *root.rglob("*")]
            if ".dtcore" not in p.parts}


def _setup(tmp_path, **settings):
    src = tmp_path / "src"
    _tree(src)
    engine = Engine(secret=SECRET, LogDir=str(tmp_path / "logs"), **settings)
    target = engine.start_target(tmp_path / "dst", port=0)
    repset = ReplicationSet(src)
    conn = engine.connect(repset, port=target.port, target_path="data")
    return engine, repset, conn, src, tmp_path / "dst" / "data"


def test_off_by_default(tmp_path):
    engine, repset, conn, src, dst = _setup(tmp_path)
    with engine:
        engine.mirror(conn, repset, FULL)
    assert all(not v for v in _sets(dst).values())


def test_mirrors_carry_them_and_a_difference_mirror_sends_a_change_to_them_alone(tmp_path):
    engine, repset, conn, src, dst = _setup(tmp_path, ExtendedAttributes=1)
    with engine:
        engine.mirror(conn, repset, FULL)
        assert _sets(dst) == _sets(src)
        os.setxattr(src / "docs" / "a.txt", "user.colour", b"green")
        os.removexattr(src / "docs" / "a.txt", "user.tag")
        os.setxattr(src / "b.bin", "user.new", b"1")
        engine.mirror(conn, repset, DIFFERENCE, checksum=False)
        assert _sets(dst) == _sets(src)
        assert xattrs.read(str(dst / "docs" / "a.txt")) == {b"user.colour": b"green"}
        # a file sent again (its content changed) loses what the source lost
        os.removexattr(src / "b.bin", "trusted.origin")
        (src / "b.bin").write_bytes(os.urandom(200_000))
        engine.mirror(conn, repset, DIFFERENCE, checksum=False)
        assert xattrs.read(str(dst / "b.bin")) == {b"user.new": b"1"}


def test_restore_brings_them_back(tmp_path):
    engine, repset, conn, src, dst = _setup(tmp_path, ExtendedAttributes=1)
    with engine:
        engine.mirror(conn, repset, FULL)
        fresh = tmp_path / "fresh"
        engine.restore(conn, fresh)
    assert _sets(fresh) == {k: v for k, v in _sets(dst).items()}
    assert xattrs.read(str(fresh / "docs")) == {b"user.project": b"apollo"}


def test_a_watched_replication_sends_changes_to_them(tmp_path):
    engine, repset, conn, src, dst = _setup(tmp_path, ExtendedAttributes=1)
    with engine:
        rep = engine.replicate(conn, repset, watch=True, mirror=FULL,
                               directory=str(tmp_path / "q"))
        os.setxattr(src / "docs" / "a.txt", "user.colour", b"red")
        (src / "new.txt").write_bytes(b"new")
        os.setxattr(src / "new.txt", "user.fresh", b"yes")
        deadline = time.monotonic() + 20
        while _sets(dst) != _sets(src) and time.monotonic() < deadline:
            rep.drain(5)
            time.sleep(0.05)
        assert _sets(dst) == _sets(src)
        assert rep.close(10)
