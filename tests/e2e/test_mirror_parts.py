"""Mirrors that walk, compare and send the set part by part: with parts of a
few entries on both sides they do what a mirror of the set in one part
does, and a mirror that settled (forgot the names it had sent) resumes
without sending those files again."""
from __future__ import annotations

import os
import random

import pytest

from dtcore.model.repset import ReplicationSet
from dtcore.source.mirror import DIFFERENCE, FULL, SKIPPED, WHOLE, MirrorOptions
from dtcore.source.mirror import run as mirror_run
from dtcore.source.mirror.run import Mirror
from dtcore.target import requests
from trees import assert_same

pytestmark = pytest.mark.timeout(120)
SECRET = "parts-test-secret"


def _tree(root, seed=3):
    """Folders at several depths, with names that sort around "/" (a-b, a.x)."""
    rng = random.Random(seed)
    for d in ("a", "a-b", "a.x", "a/b", "a/b/c", "z", "z/y"):
        (root / d).mkdir(parents=True, exist_ok=True)
        for f in range(rng.randrange(2, 6)):
            (root / d / f"f{f}").write_bytes(rng.randbytes(rng.choice([0, 10, 3000, 70_000])))
    (root / "a" / "link").symlink_to("f0")
    os.link(root / "a" / "b" / "f1", root / "z" / "hard")


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(mirror_run, "PART", 200)
    monkeypatch.setattr(mirror_run, "DONE_MAX", 2)
    monkeypatch.setattr(requests, "MANIFEST_PART", 150)


def _mirror_twice(engine, tmp_path, name):
    """A full mirror with orphans into a target path that holds strays, then
    a change and a difference mirror; what each mirror reported."""
    src = tmp_path / f"src-{name}"
    _tree(src)
    target = engine.start_target(tmp_path / f"tgt-{name}", port=0)
    copy = tmp_path / f"tgt-{name}" / "job"
    for stray in ("0-first", "a/b/stray", "a-b/zz/deep", "zzz"):
        (copy / stray).parent.mkdir(parents=True, exist_ok=True)
        (copy / stray).write_bytes(b"orphan")
    repset = ReplicationSet(src)
    conn = engine.connect(repset, "127.0.0.1", target.port, "job")
    full = engine.mirror(conn, repset, FULL, orphans=True)
    assert_same(src, copy)
    (src / "a" / "b" / "c" / "f0").write_bytes(b"changed")
    (src / "z" / "new").write_bytes(b"new")
    (copy / "a.x" / "stray").write_bytes(b"orphan")
    diff = engine.mirror(conn, repset, DIFFERENCE, orphans=True)
    assert_same(src, copy)
    check = engine.verify(conn, repset, checksum=True)
    assert check.differences == []
    conn.close()
    return [(r.files, r.directories, r.bytes_total, dict(r.strategies), r.hard_links,
             dict(r.orphans)) for r in (full, diff)]


def test_a_mirror_in_tiny_parts_does_what_a_mirror_in_one_part_does(engine, tmp_path,
                                                                     monkeypatch):
    whole = _mirror_twice(engine, tmp_path, "whole")
    monkeypatch.setattr(mirror_run, "PART", 200)
    monkeypatch.setattr(requests, "MANIFEST_PART", 150)
    assert _mirror_twice(engine, tmp_path, "parts") == whole


def test_a_resumed_mirror_takes_what_it_settled_as_done(engine, tmp_path, tiny):
    src = tmp_path / "src"
    _tree(src)
    target = engine.start_target(tmp_path / "tgt", port=0)
    repset = ReplicationSet(src)
    conn = engine.connect(repset, "127.0.0.1", target.port, "job")
    m = Mirror(conn, repset, MirrorOptions.from_config(engine.config, mode=FULL))
    first = m.run()
    sent = first.strategies[WHOLE]
    assert sent > 10 and m.done_upto is not None and len(m.done) <= mirror_run.DONE_MAX + 5
    again = m.run(resume=True)  # a full mirror, but what was acknowledged is not sent again
    assert again.strategies[WHOLE] == sent
    assert again.files < sent
    assert_same(src, tmp_path / "tgt" / "job")
    fresh = Mirror(conn, repset, MirrorOptions.from_config(engine.config, mode=FULL)).run()
    assert fresh.strategies[WHOLE] == sent and fresh.strategies[SKIPPED] == 0


@pytest.mark.parametrize("checksum", [False, True])
def test_changed_small_files_go_in_bulk_and_a_mode_change_alone_sends_attributes(
        engine, tmp_path, monkeypatch, checksum):
    """A difference mirror sends small files whose content differs through
    the bulk path (plan_file would send them whole anyway), and a file whose
    content is the same (its mode alone changed; by checksum, its time too)
    as attributes, never its bytes."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("grown", "touched", "mode", "same-size"):
        (src / name).write_bytes(b"x" * 500)
    target = engine.start_target(tmp_path / "tgt", port=0)
    repset = ReplicationSet(src)
    conn = engine.connect(repset, "127.0.0.1", target.port, "job")
    engine.mirror(conn, repset, FULL)
    copy = tmp_path / "tgt" / "job"
    (src / "grown").write_bytes(b"y" * 600)
    os.utime(src / "touched", ns=(1, 1_700_000_000_000_000_000))
    os.chmod(src / "mode", 0o600)
    st = (src / "same-size").stat()
    (src / "same-size").write_bytes(b"z" * 500)  # same size and time: only a checksum sees it
    os.utime(src / "same-size", ns=(st.st_atime_ns, st.st_mtime_ns))
    bulk: list[bytes] = []
    real = mirror_run.Sender.small_files

    def spy(self, listing, picked):
        bulk.extend(listing.path(int(i)) for i in picked)
        return real(self, listing, picked)
    monkeypatch.setattr(mirror_run.Sender, "small_files", spy)
    r = engine.mirror(conn, repset, DIFFERENCE, checksum=checksum, itemize=True)
    # by checksum, a new time over the same bytes is an attribute change too
    assert sorted(bulk) == ([b"grown", b"same-size"] if checksum else [b"grown", b"touched"])
    assert ("attributes", "mode") in r.items
    assert (("attributes", "touched") in r.items) == checksum
    for name in ("grown", "touched", "mode"):
        assert (copy / name).read_bytes() == (src / name).read_bytes()
        assert (copy / name).stat().st_mtime_ns == (src / name).stat().st_mtime_ns
        assert (copy / name).stat().st_mode == (src / name).stat().st_mode
    assert ((copy / "same-size").read_bytes() == b"z" * 500) == checksum
