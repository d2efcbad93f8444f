"""Mirrors through a proxy that cuts the first connection after a chosen
number of bytes, in either direction: each cut mirror reconnects, resumes
and completes, and the target then verifies without a difference.  Each
runs with the whole set in one part and again in parts of a few entries on
both sides, settling (forgetting acknowledged names) after every few files."""
from __future__ import annotations

import os
import random
import shutil

import pytest

from dtcore.model.repset import ReplicationSet
from dtcore.source.mirror import DIFFERENCE, FULL
from loopback_proxy import DOWN, UP, CuttingProxy

pytestmark = pytest.mark.timeout(120)
SECRET = "cut-test-secret"


def _source(root):
    rng = random.Random(5)
    for d in range(3):
        (root / f"d{d}").mkdir(parents=True)
        for f in range(6):
            size = rng.choice([0, 100, 5000, 70_000, 300_000])
            (root / f"d{d}" / f"f{f}.bin").write_bytes(rng.randbytes(size))
    (root / "d0" / "link").symlink_to("f0.bin")
    os.link(root / "d1" / "f1.bin", root / "d2" / "hard")


def _change(root):
    with open(root / "d0" / "f3.bin", "r+b") as f:
        f.seek(1000)
        f.write(b"changed" * 100)
    (root / "d1" / "new.bin").write_bytes(os.urandom(90_000))
    (root / "d2" / "f0.bin").unlink()


@pytest.fixture(params=["whole", "parts"])
def world(engine, tmp_path, request, monkeypatch):
    if request.param == "parts":
        from dtcore.source.mirror import run
        from dtcore.target import requests
        monkeypatch.setattr(run, "PART", 300)
        monkeypatch.setattr(run, "DONE_MAX", 3)
        monkeypatch.setattr(requests, "MANIFEST_PART", 200)
    src = tmp_path / "src"
    _source(src)
    target = engine.start_target(tmp_path / "tgt", port=0)
    return engine, target, src


def _mirror_through(engine, target, src, path, mode, direction, cut_after):
    proxy = CuttingProxy(target.port, direction, cut_after)
    try:
        repset = ReplicationSet(src)
        conn = engine.connect(repset, "127.0.0.1", proxy.port, path)
        result = engine.mirror(conn, repset, mode, orphans=True)
        check = engine.verify(conn, repset, checksum=True)
        conn.close()
    finally:
        proxy.close()
    return proxy, result, check


def _total(engine, target, src, tmp_path):
    """Bytes each way of a whole uncut full mirror (through the proxy)."""
    proxy, _, _ = _mirror_through(engine, target, src, "measure", FULL, UP, None)
    return proxy.moved


@pytest.mark.parametrize("direction", [UP, DOWN])
def test_a_full_mirror_cut_anywhere_resumes_and_completes(world, tmp_path, direction):
    engine, target, src = world
    total = _total(engine, target, src, tmp_path)[direction]
    # cuts inside the handshake, the manifest, small and large files, the end
    offsets = sorted({1, 30, 200, 1000} | {int(total * f) for f in
                     (0.01, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9, 0.97, 0.995)})
    survived = 0
    for i, cut in enumerate(offsets):
        proxy, result, check = _mirror_through(engine, target, src, f"full-{i}", FULL, direction,
                                               cut)
        assert check.differences == [], (cut, check.differences)
        assert proxy.connections >= 1
        survived += proxy.cuts
    assert survived >= len(offsets) - 2  # the cuts did happen (a very late one may not)


def test_a_difference_mirror_cut_anywhere_resumes_and_completes(world, tmp_path):
    engine, target, old = world
    new = tmp_path / "new"
    shutil.copytree(old, new, symlinks=True)
    _change(new)

    def fresh(path):  # the target path as the old set left it, mirrored uncut
        repset = ReplicationSet(old)
        conn = engine.connect(repset, "127.0.0.1", target.port, path)
        engine.mirror(conn, repset, FULL)
        conn.close()

    fresh("diff-measure")
    proxy, _, _ = _mirror_through(engine, target, new, "diff-measure", DIFFERENCE, UP, None)
    total = proxy.moved[UP]
    for i, cut in enumerate(sorted({1, 500} | {int(total * f) for f in (0.1, 0.3, 0.5, 0.7, 0.9)})):
        fresh(f"diff-{i}")
        proxy, result, check = _mirror_through(engine, target, new, f"diff-{i}", DIFFERENCE, UP,
                                               cut)
        assert check.differences == [], (cut, check.differences)
        assert result.strategies["block"] + result.strategies["whole"] >= 1
