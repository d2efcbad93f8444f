"""A target that cannot apply what it is sent says so, and the source does
not claim success: a full disk (a real small tmpfs), ops given up, a FIFO or
a folder where the source has a file, ops on paths that are not there."""
from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest

from dtcore.engine import Engine
from dtcore.errors import ConnectionExistsError, DTError, TargetDiskFullError
from dtcore.model.ops import Op, OpKind
from dtcore.model.repset import ReplicationSet
from dtcore.protocol.messages import StateRequest
from dtcore.source.mirror import DIFFERENCE, FULL

pytestmark = pytest.mark.timeout(90)
SECRET = "fault-test-secret"


def _set(root, files):
    root.mkdir(parents=True, exist_ok=True)
    for name, size in files.items():
        (root / name).write_bytes(os.urandom(size))


def _same_tree(a, b):
    def tree(root):
        return {p.relative_to(root): (p.is_dir(), None if p.is_dir() else p.read_bytes())
                for p in root.rglob("*") if ".dtcore" not in p.parts}
    assert tree(a) == tree(b)


def test_a_full_target_fails_the_mirror_with_173_and_a_later_mirror_repairs(tmp_path, small_disk):
    src = tmp_path / "src"
    _set(src, {"a.bin": 700_000, "b.bin": 700_000, "c.bin": 900_000})
    with Engine(secret=SECRET, TGExecutionRetryLimit=1, TGRetryLocked=0) as engine:
        target = engine.start_target(small_disk, port=0)
        repset = ReplicationSet(src)
        conn = engine.connect(repset, "127.0.0.1", target.port, "job")
        with pytest.raises(TargetDiskFullError) as info:
            engine.mirror(conn, repset, FULL)
        err = info.value
        assert err.code == -173 and "needs a remirror" in str(err)
        dropped = err.result.dropped
        assert dropped and all(code == -173 and e == 28 for _, code, e, _ in dropped)
        assert conn.call(StateRequest())[0]["state"] == "Mirror Required"
        # room again (the set shrinks, its partial copy goes): a difference
        # mirror by attributes finds what was not written (the target did not
        # take the source's times for it)
        (src / "c.bin").unlink()
        (small_disk / "job" / "c.bin").unlink(missing_ok=True)
        engine.mirror(conn, repset, DIFFERENCE, checksum=False, orphans=True)
        assert engine.verify(conn, repset).differences == []
        _same_tree(src, small_disk / "job")


def test_a_full_target_retrying_tells_the_source_and_goes_on_when_room_returns(
        tmp_path, small_disk, seen_events):
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (1800 << 10))
    src = tmp_path / "src"
    _set(src, {"a.bin": 400_000, "b.bin": 300_000})
    with Engine(secret=SECRET, TGRetryLocked=1) as engine:  # retries until it works
        target = engine.start_target(small_disk, port=0)
        repset = ReplicationSet(src)
        conn = engine.connect(repset, "127.0.0.1", target.port, "job")
        notices = []
        outcome = {}

        def run():
            try:
                outcome["result"] = engine.mirror(conn, repset, FULL,
                                                  progress=lambda m: notices.append(m.notice))
            except BaseException as e:  # noqa: BLE001 - reported below
                outcome["error"] = e

        t = threading.Thread(target=run)
        t.start()
        deadline = time.monotonic() + 20
        while not any(notices) and time.monotonic() < deadline:
            time.sleep(0.05)
        notice = next(n for n in notices if n)
        assert notice.failure.code == -173 and notice.failure.errno == 28
        assert any(e.id == 6001 and "retrying" in e.fields.get("detail", "") for e in seen_events)
        filler.unlink()
        t.join(30)
        assert "error" not in outcome and outcome["result"].files == 2
        _same_tree(src, small_disk / "job")


def test_ops_given_up_are_reported_and_a_difference_mirror_repairs(engine, tmp_path):
    """A permanent failure (a file over the target process's size limit,
    EFBIG) ends the mirror with its error instead of exit 0."""
    src = tmp_path / "src"
    _set(src, {"small": 1000, "big": 3 << 20})
    root = tmp_path / "tgt"
    code = ("import resource, signal, sys, time\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\n"
            "from dtcore.engine import Engine\n"
            f"e = Engine(secret={SECRET!r})\n"
            f"t = e.start_target({str(root)!r}, port=0)\n"
            "print(t.port, flush=True)\n"
            "sys.stdin.read()\n")
    proc = subprocess.Popen([os.sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        repset = ReplicationSet(src)
        conn = engine.connect(repset, "127.0.0.1", port, "job")
        with pytest.raises(DTError) as info:
            engine.mirror(conn, repset, FULL)
        assert [p for p, *_ in info.value.result.dropped] == ["big"]
        assert conn.call(StateRequest())[0]["state"] == "Mirror Required"
        assert (root / "job" / "small").read_bytes() == (src / "small").read_bytes()
    finally:
        proc.stdin.close()
        proc.wait(10)


def test_a_folder_and_a_file_change_places(engine, tmp_path):
    src = tmp_path / "src"
    (src / "was_dir").mkdir(parents=True)
    (src / "was_dir" / "inner.txt").write_bytes(b"inner")
    (src / "was_file").write_bytes(b"file")
    target = engine.start_target(tmp_path / "tgt", port=0)
    repset = ReplicationSet(src)
    conn = engine.connect(repset, "127.0.0.1", target.port, "job")
    engine.mirror(conn, repset, FULL)
    (src / "was_dir" / "inner.txt").unlink()
    (src / "was_dir").rmdir()
    (src / "was_dir").write_bytes(b"now a file")
    (src / "was_file").unlink()
    (src / "was_file").mkdir()
    (src / "was_file" / "new.txt").write_bytes(b"new")
    for checksum in (False, True):
        engine.mirror(conn, repset, DIFFERENCE, checksum=checksum, orphans=True)
        _same_tree(src, tmp_path / "tgt" / "job")
    assert engine.verify(conn, repset).differences == []


def test_a_fifo_on_the_target_does_not_hang_the_mirror(engine, tmp_path):
    src = tmp_path / "src"
    _set(src, {"pipe": 100_000, "other": 10})
    target = engine.start_target(tmp_path / "tgt", port=0)
    (tmp_path / "tgt" / "job").mkdir(parents=True)
    os.mkfifo(tmp_path / "tgt" / "job" / "pipe")
    repset = ReplicationSet(src)
    conn = engine.connect(repset, "127.0.0.1", target.port, "job")
    for mode in (DIFFERENCE, FULL):
        engine.mirror(conn, repset, mode)
        _same_tree(src, tmp_path / "tgt" / "job")
        os.unlink(tmp_path / "tgt" / "job" / "pipe")
        os.mkfifo(tmp_path / "tgt" / "job" / "pipe")


def test_ops_on_missing_paths_are_given_up_not_retried_forever(engine, tmp_path):
    """With the default retry limit (none), ops naming paths that are not on
    the target end in a report at once, and later ops go on."""
    target = engine.start_target(tmp_path / "tgt", port=0)
    src = tmp_path / "src"
    src.mkdir()
    conn = engine.connect(ReplicationSet(src), "127.0.0.1", target.port, "job")
    started = time.monotonic()
    conn.send_ops([Op(OpKind.RENAME, 0, 1, b"missing", 0, b"elsewhere"),
                   Op(OpKind.LINK, 0, 2, b"link", 0, b"missing-too"),
                   Op(OpKind.MKDIR, 0, 3, b"after", 0o755)])
    conn.flush(timeout=20)
    assert time.monotonic() - started < 10
    assert sorted(f.path for f in conn.tx.take_dropped()) == [b"link", b"missing"]
    assert (tmp_path / "tgt" / "job" / "after").is_dir()


def test_two_sources_cannot_share_a_target_path(engine, tmp_path):
    target = engine.start_target(tmp_path / "tgt", port=0)
    a, b = tmp_path / "a", tmp_path / "b"
    _set(a, {"same": 1000})
    _set(b, {"same": 2000})
    first = engine.connect(ReplicationSet(a), "127.0.0.1", target.port, "shared")
    with Engine(secret=SECRET) as other:
        for path in ("shared", "shared/inner", ""):  # the path, one inside it, one around it
            with pytest.raises(ConnectionExistsError, match="in use by another source"):
                other.connect(ReplicationSet(b), "127.0.0.1", target.port, path)
        elsewhere = other.connect(ReplicationSet(b), "127.0.0.1", target.port, "other")
        other.mirror(elsewhere, ReplicationSet(b), FULL)
        first.close()
        deadline = time.monotonic() + 5
        while target.sessions > 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        second = other.connect(ReplicationSet(b), "127.0.0.1", target.port, "shared")
        other.mirror(second, ReplicationSet(b), FULL)
    assert (tmp_path / "tgt" / "shared" / "same").read_bytes() == (b / "same").read_bytes()
