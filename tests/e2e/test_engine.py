"""End to end on loopback: a target service and a source engine in this
process, real files in temporary folders, real sockets on 127.0.0.1."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dtcore.engine import Engine
from dtcore.errors import AccessDeniedError
from dtcore.model.repset import ReplicationSet
from dtcore.protocol.messages import StateRequest
from dtcore.source.mirror import BLOCK, DIFFERENCE, FULL, ROLLING, SKIPPED
from dtcore.target.states import DataStates
from trees import assert_exact, assert_same, build

pytestmark = pytest.mark.timeout(120)
SECRET = "engine-test-secret"


@pytest.fixture
def setup(engine, tmp_path):
    """(engine, source, target root, target path folder, connection, repset)."""
    src = tmp_path / "src"
    src.mkdir()
    build(src)
    target = engine.start_target(tmp_path / "tgt", port=0)
    repset = ReplicationSet(src)
    conn = engine.connect(repset, "127.0.0.1", target.port, "job")
    return engine, src, tmp_path / "tgt", tmp_path / "tgt" / "job", conn, repset


def test_full_mirror_copies_everything(setup):
    engine, src, root, dst, conn, repset = setup
    r = engine.mirror(conn, repset, FULL)
    assert_same(src, dst)
    assert os.stat(dst / "hard-twin").st_ino == os.stat(dst / "docs" / "f04.txt").st_ino
    assert r.hard_links == 1
    assert os.stat(dst / "sparse.img").st_blocks * 512 < 1 << 20  # holes stayed holes
    snap = engine.statistics()
    assert snap.value("connection", "conMirrorPercent") == 100 * 100
    assert snap.value("connection", "conMirrorBytesRemaining") == 0
    assert snap.value("server", "MirBytesGenerated") >= r.bytes_total - (8 << 20)
    assert snap.value("connection", "ConMirrorEndTime") >= snap.value("connection", "ConMirrorStartTime") > 0
    assert DataStates(str(root / ".dtcore")).get("job") == "OK"


def test_a_mirror_right_after_connecting_walks_the_set_once(setup, monkeypatch):
    engine, src, root, dst, _, repset = setup
    totals = engine.repset_totals[repset.name]  # CalculateOnConnect, on by default
    walks = []
    for name in ("listing", "parts"):  # a whole walk, or one taken part by part
        real = getattr(ReplicationSet, name)
        monkeypatch.setattr(ReplicationSet, name,
                            lambda self, *a, real=real: walks.append(1) or real(self, *a))
    target = engine.start_target(root.parent / "tgt2", port=0)
    conn = engine.connect(repset, "127.0.0.1", target.port, "job", calculate=False)
    assert not walks
    engine.repset_totals.clear()
    engine.mirror(conn, repset, FULL)
    assert len(walks) == 1
    assert engine.repset_totals[repset.name] == totals  # the mirror's walk gave them
    engine.connect(repset, "127.0.0.1", target.port, "job2")
    assert len(walks) == 2


def test_difference_by_attributes_and_by_checksum(setup):
    engine, src, root, dst, conn, repset = setup
    engine.mirror(conn, repset, FULL)
    again = engine.mirror(conn, repset, DIFFERENCE, checksum=False)
    assert again.bytes_sent == 0 and again.strategies[SKIPPED] == again.files
    # same size and time but different bytes: only checksums see it
    target_copy = dst / "docs" / "f05.txt"
    st = target_copy.stat()
    data = bytearray(target_copy.read_bytes())
    data[0] ^= 0xFF
    target_copy.write_bytes(bytes(data))
    os.utime(target_copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    engine.mirror(conn, repset, DIFFERENCE, checksum=False)
    assert target_copy.read_bytes() != (src / "docs" / "f05.txt").read_bytes()
    r = engine.mirror(conn, repset, DIFFERENCE, checksum=True)
    assert_same(src, dst)
    assert r.bytes_sent < 10_000


def test_block_and_rolling_send_only_what_changed(setup):
    engine, src, root, dst, conn, repset = setup
    engine.mirror(conn, repset, FULL)
    with open(src / "big.bin", "r+b") as f:  # rewrite one block in place
        f.seek(1 << 20)
        f.write(os.urandom(1000))
    log = src / "text.log"
    log.write_bytes(b"0123456789" * 10 + log.read_bytes())  # shift everything by 100 bytes
    r = engine.mirror(conn, repset, DIFFERENCE)
    assert_same(src, dst)
    assert r.strategies[BLOCK] == 1 and r.strategies[ROLLING] == 1
    assert r.bytes_sent < 200_000, r


def test_orphans_removed_and_moved(setup, tmp_path):
    engine, src, root, dst, conn, repset = setup
    engine.mirror(conn, repset, FULL)
    (src / "docs" / "f06.txt").unlink()
    (dst / "stray").mkdir()
    (dst / "stray" / "junk").write_bytes(b"x" * 10)
    r = engine.mirror(conn, repset, DIFFERENCE, orphans=True)
    assert_same(src, dst)
    assert r.orphans == {"files": 2, "directories": 1, "bytes": r.orphans["bytes"]}
    snap = engine.statistics()
    assert snap.value("target", "Orphan Files Removed") == 2
    # moved instead of removed
    engine.config.set("MoveOrphanedFiles", 1)
    engine.config.set("MoveOrphansDir", str(tmp_path / "moved"))
    (dst / "docs" / "extra.txt").write_bytes(b"keep me")
    engine.mirror(conn, repset, DIFFERENCE, orphans=True, move_orphans=True)
    assert (tmp_path / "moved" / "docs" / "extra.txt").read_bytes() == b"keep me"
    assert not (dst / "docs" / "extra.txt").exists()


@pytest.mark.parametrize("overwrite", [0, 1, 2])
def test_mirror_overwrite_modes(setup, overwrite):
    engine, src, root, dst, conn, repset = setup
    engine.mirror(conn, repset, FULL)
    newer, older = dst / "docs" / "f07.txt", dst / "docs" / "f08.txt"
    newer.write_bytes(b"target edit, newer")
    older.write_bytes(b"target edit, older")
    os.utime(older, ns=(0, 10**9))
    engine.mirror(conn, repset, DIFFERENCE, overwrite=overwrite)
    src_newer, src_older = (src / "docs" / "f07.txt").read_bytes(), (src / "docs" / "f08.txt").read_bytes()
    expect = {0: (b"target edit, newer", b"target edit, older"),
              1: (src_newer, src_older),
              2: (b"target edit, newer", src_older)}[overwrite]
    assert (newer.read_bytes(), older.read_bytes()) == expect


def test_zero_k_files_setting(setup):
    engine, src, root, dst, conn, repset = setup
    engine.mirror(conn, repset, FULL, zero_k_files=False)
    assert not (dst / "zero").exists() and (dst / "big.bin").exists()


def test_verify_finds_planted_difference(setup, tmp_path):
    engine, src, root, dst, conn, repset = setup
    engine.mirror(conn, repset, FULL)
    assert engine.verify(conn, repset, log_dir=str(tmp_path / "v")).differences == []
    with open(dst / "big.bin", "r+b") as f:
        f.seek(2 << 20)
        f.write(b"planted")
    r = engine.verify(conn, repset, log_dir=str(tmp_path / "v"))
    assert [p for p, _ in r.differences] == ["big.bin"]
    assert "1 of 48 blocks differ" in r.differences[0][1]
    text = (tmp_path / "v" / "DTVerify.log").read_text()
    assert "big.bin" in text and "verify complete: 1 differences" in text
    fixed = engine.verify(conn, repset, remirror=True, log_dir=str(tmp_path / "v"))
    assert len(fixed.differences) == 1
    assert_same(src, dst)


def test_restore_brings_target_back(setup, tmp_path):
    engine, src, root, dst, conn, repset = setup
    engine.mirror(conn, repset, FULL)
    (src / "docs" / "f09.txt").unlink()
    with open(src / "big.bin", "r+b") as f:
        f.write(b"local damage")
    r = engine.restore(conn, src, overwrite=1)
    assert (src / "docs" / "f09.txt").read_bytes() == (dst / "docs" / "f09.txt").read_bytes()
    assert (src / "big.bin").read_bytes() == (dst / "big.bin").read_bytes()
    assert r.bytes_fetched < (2 << 20)  # big.bin: only the damaged block came back
    fresh = tmp_path / "fresh"
    seen = []
    engine.restore(conn, fresh, progress=lambda r: seen.append(r.bytes_fetched))
    assert (fresh / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
    # progress as each 4 MiB chunk arrives, not only between files (--timeout watches it)
    assert any(b - a == 4 << 20 for a, b in zip(seen, seen[1:]))
    # folder and link times too, the restored root's own included, and hard links
    assert_exact(dst, fresh)


def test_mirror_resumes_mid_file_after_lost_connection(engine, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "huge.bin").write_bytes(os.urandom(24 << 20))
    (src / "after.bin").write_bytes(os.urandom(1 << 20))
    target = engine.start_target(tmp_path / "tgt", port=0)
    repset = ReplicationSet(src)
    conn = engine.connect(repset, "127.0.0.1", target.port, "job", compression=False)
    cut = threading.Event()

    def progress(m):
        if not cut.is_set() and m.conn.counters["conBytesCompressedTx"] > 8 << 20:
            cut.set()
            m.conn.link.ch.close()  # the network drops mid-file

    r = engine.mirror(conn, repset, FULL, progress=None, workers=1)
    assert r.resumed == 0
    (src / "huge.bin").write_bytes(os.urandom(24 << 20))
    (tmp_path / "tgt" / "job" / "after.bin").unlink()
    before = conn.counters["conBytesCompressedTx"]
    seen = []
    unsub = engine.subscribe(lambda ev: seen.append(ev.id))
    r = engine.mirror(conn, repset, FULL, progress=progress, workers=1, checksum=False)
    unsub()
    assert cut.is_set() and r.resumed == 1
    assert 4009 in seen and 4010 in seen
    assert_same(src, tmp_path / "tgt" / "job")
    # the resumed pass did not start the big file over
    assert conn.counters["conBytesCompressedTx"] - before < 36 << 20


def test_a_finished_session_keeps_nothing_large_while_it_waits_for_the_collector(engine,
                                                                                  tmp_path):
    """A session's threads and link callbacks form cycles, so it lives on
    until the collector runs: a long-lived target must not hold every
    served session's walk of its manifest until then."""
    import gc

    from dtcore.target.session import Session
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2000):
        (src / f"f{i:05}").write_bytes(b"x")
    target = engine.start_target(tmp_path / "tgt", port=0)
    gc.collect()
    gc.disable()  # the lingering sessions stay for the test to see
    try:
        for _ in range(3):
            with Engine(secret=SECRET) as source:
                repset = ReplicationSet(src)
                conn = source.connect(repset, "127.0.0.1", target.port, "job")
                source.mirror(conn, repset, DIFFERENCE, checksum=True)
        deadline = time.monotonic() + 10
        while target.sessions and time.monotonic() < deadline:
            time.sleep(0.02)
        served = [o for o in gc.get_objects() if isinstance(o, Session)]
        assert len(served) >= 2, "the test needs lingering sessions to look at"
        assert all(s.manifest is None for s in served)
        assert all(s.queue is None or s.queue.memory.counts()["pool_used"] == 0 for s in served)
    finally:
        gc.enable()


def test_target_data_state_survives_restart(engine, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"a")
    t = engine.start_target(tmp_path / "tgt", port=0)
    repset = ReplicationSet(src)
    conn = engine.connect(repset, "127.0.0.1", t.port, "p")
    assert conn.target_state == "Mirror Required"  # never mirrored
    engine.mirror(conn, repset, FULL)
    conn.close()
    t.stop()
    t2 = engine.start_target(tmp_path / "tgt", port=0)
    assert engine.connect(repset, "127.0.0.1", t2.port, "p").target_state == "OK"


def test_a_folder_in_the_way_of_a_file_is_replaced(engine, tmp_path):
    """The source has a file where the target holds a folder (with files):
    the folder goes, the file takes its place and the target path is OK.
    (Ops the target must give up are in test_faults.py.)"""
    src = tmp_path / "src"
    src.mkdir()
    (src / "blocked").write_bytes(b"file on the source")
    t = engine.start_target(tmp_path / "tgt", port=0)
    (tmp_path / "tgt" / "p" / "blocked").mkdir(parents=True)  # a folder is in the way
    (tmp_path / "tgt" / "p" / "blocked" / "keep").write_bytes(b"x")
    repset = ReplicationSet(src)
    conn = engine.connect(repset, "127.0.0.1", t.port, "p")
    engine.mirror(conn, repset, FULL)
    assert (tmp_path / "tgt" / "p" / "blocked").read_bytes() == b"file on the source"
    assert conn.call(StateRequest())[0]["state"] == "OK"
    assert engine.statistics().value("target", "OpsDropped") == 0


def test_tls_crc_and_flow_control(tmp_path):
    with Engine(secret=SECRET, EncryptNetworkData=1, EnableCRCCheck=1,
                TGMirrorCapacityHigh=2, TGMirrorCapacityLow=1) as engine:
        src = tmp_path / "src"
        src.mkdir()
        build(src)
        # a tiny "system memory" so that the mirror must pause and resume
        t = engine.start_target(tmp_path / "tgt", port=0, memory_bytes=8 << 20)
        repset = ReplicationSet(src)
        conn = engine.connect(repset, "127.0.0.1", t.port, "tls")
        assert conn.link.ch.sock.version() == "TLSv1.2"
        assert "AES256" in conn.link.ch.sock.cipher()[0]
        engine.mirror(conn, repset, FULL)
        assert_same(src, tmp_path / "tgt" / "tls")
        assert t.flow_pauses >= 1


def test_wrong_secret_is_refused_and_counted(engine, tmp_path):
    t = engine.start_target(tmp_path / "tgt", port=0)
    (tmp_path / "s").mkdir()
    with Engine(secret="not the secret") as other:
        with pytest.raises(AccessDeniedError):
            other.connect(ReplicationSet(tmp_path / "s"), "127.0.0.1", t.port)
    time.sleep(0.1)
    assert engine.statistics().value("server", "FailedLogins") == 1


def test_command_line_target_and_mirror(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    build(src, big=1 << 20)
    env = {**os.environ, "DTCORE_SECRET": SECRET, "DTCORE_LOGDIR": str(tmp_path / "logs")}
    exe = [sys.executable, "-m", "dtcore.cli.main"]
    server = subprocess.Popen([*exe, "target", "--root", str(tmp_path / "tgt"), "--create", "--port", "0",
                               "--host", "127.0.0.1"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        port = int(line.rsplit(":", 1)[1])
        out = subprocess.run([*exe, "mirror", str(src), f"127.0.0.1:{port}:cli", "--full"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "full mirror" in out.stdout and "conBytesTx" in out.stdout
        assert_same(src, tmp_path / "tgt" / "cli")
        (tmp_path / "tgt" / "cli" / "docs" / "f10.txt").write_bytes(b"changed on the target")
        out = subprocess.run([*exe, "verify", str(src), f"127.0.0.1:{port}:cli", "--log-dir",
                              str(tmp_path / "v")], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 3 and "docs/f10.txt" in out.stdout  # differences found
    finally:
        server.terminate()
        server.wait(10)


def test_manifest_larger_than_a_reply_comes_in_parts(setup, tmp_path, monkeypatch):
    """A listing over one reply's part is fetched in several: the difference
    mirror still finds what changed and what is orphaned, and restore still
    brings everything back."""
    import dtcore.target.requests
    monkeypatch.setattr(dtcore.target.requests, "MANIFEST_PART", 100)
    engine, src, root, dst, conn, repset = setup
    engine.mirror(conn, repset, FULL)
    (dst / "orphan.txt").write_bytes(b"only on the target")
    (src / "docs" / "f03.txt").write_bytes(b"changed at the source")
    assert len(conn.manifest()) > 5 * 100  # really several parts
    r = engine.mirror(conn, repset, DIFFERENCE, checksum=True, orphans=True)
    assert_same(src, dst)
    assert r.bytes_sent < 10_000
    fresh = tmp_path / "fresh"
    engine.restore(conn, fresh)
    files = sorted(p.relative_to(dst) for p in dst.rglob("*") if p.is_file() and not p.is_symlink())
    assert len(files) > 10
    assert all((fresh / f).read_bytes() == (dst / f).read_bytes() for f in files)


def _strict_tree(root):
    """Every entry below ``root`` and the folder itself: mode, owner, size,
    modification time, and content or link text."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        names = dirs + files + (["."] if dirpath == str(root) else [])
        for name in names:
            p = Path(dirpath) / name
            rel = os.path.normpath(os.path.relpath(p, root))
            if rel.split(os.sep)[0] == ".dtcore":
                continue
            st = os.lstat(p)
            body = os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else None
            out[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns,
                        None if p.is_dir() else st.st_size, body)
    return out


def test_the_copy_is_exact_folder_times_included(engine, tmp_path):
    """Folder times (the target path's own folder too) match the source's
    after a full mirror and after a difference mirror that removed orphans."""
    src = tmp_path / "src"
    (src / "d" / "e").mkdir(parents=True)
    (src / "d" / "f.txt").write_text("f")
    (src / "d" / "e" / "g.txt").write_text("g")
    (src / "top.txt").write_text("t")
    os.symlink("top.txt", src / "link")
    old = 10**18
    for p in (src / "d" / "e", src / "d", src):
        os.utime(p, ns=(old, old))
    target = engine.start_target(tmp_path / "tgt", port=0)
    repset = ReplicationSet(src)
    conn = engine.connect(repset, "127.0.0.1", target.port, "job")
    engine.mirror(conn, repset, FULL)
    assert _strict_tree(src) == _strict_tree(tmp_path / "tgt" / "job")
    (src / "d" / "new.txt").write_text("n")
    (src / "d" / "e" / "g.txt").unlink()
    for p in (src / "d" / "e", src / "d"):
        os.utime(p, ns=(2 * old, 2 * old))
    (tmp_path / "tgt" / "job" / "d" / "orphan").write_text("o")
    engine.mirror(conn, repset, DIFFERENCE, orphans=True)
    assert _strict_tree(src) == _strict_tree(tmp_path / "tgt" / "job")


def test_a_full_source_queue_holds_writers_back_without_stopping_the_link(tmp_path):
    """A small ring (32 MB) and a window far larger than it (20,000 ops of
    64 KiB): the mirror's workers find the queue full again and again while
    the transmitter numbers and sends what it popped.  A writer waiting for
    room must never hold what the transmitter needs to make that room."""
    src = tmp_path / "src"
    (src / "small").mkdir(parents=True)
    for k in range(6):
        (src / f"big{k}").write_bytes(os.urandom(12 << 20))
    for k in range(600):
        (src / "small" / f"s{k}").write_bytes(os.urandom(300 + k))
    with Engine(secret=SECRET, QMemoryBufferMax=32, SourcePendingAcks=20000,
                SmallFileThreshold=1 << 30) as engine:
        t = engine.start_target(tmp_path / "tgt", port=0)
        repset = ReplicationSet(src)
        conn = engine.connect(repset, "127.0.0.1", t.port, "q")
        done = threading.Event()
        th = threading.Thread(target=lambda: (engine.mirror(conn, repset, FULL, workers=6),
                                              done.set()), daemon=True)
        th.start()
        assert done.wait(120), "the mirror stalled"
        assert_same(src, tmp_path / "tgt" / "q")
