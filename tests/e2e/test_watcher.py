"""Replication fed by the file watcher over loopback: a real writer process
changes the set while it replicates, and afterwards the target is an exact
copy, under fanotify and under inotify; lost events heal; a folder rename is
one op on the wire."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dtcore.errors import WatchLimitError
from dtcore.source.intake.fanotify import available as fanotify_available
from trees import assert_exact

SECRET = "watcher-test-secret"
WRITER = Path(__file__).with_name("writer.py")
METHODS = [pytest.param("fanotify", marks=pytest.mark.skipif(
    not fanotify_available(), reason="fanotify needs CAP_SYS_ADMIN")), "inotify"]


def _base(src: Path) -> None:
    (src / "old" / "deep").mkdir(parents=True)
    for i in range(20):
        (src / "old" / f"pre{i}.dat").write_bytes(os.urandom(1000 * i))
    (src / "old" / "deep" / "big.bin").write_bytes(os.urandom(3 << 20))
    os.symlink("old/pre1.dat", src / "pre-link")


def _settled(rep, timeout=60):
    assert rep.drain(timeout), rep.statistics()
    assert rep.status == "Ready", rep.statistics()


@pytest.mark.parametrize("method", METHODS)
def test_a_writer_process_is_replicated_exactly(pair, tmp_path, method):
    engine, repset, conn, src, dst, _ = pair
    _base(src)
    rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"), watch=method,
                           mirror="full")
    assert rep.watcher.method == method
    subprocess.run([sys.executable, str(WRITER), str(src), "7", "400"], check=True, timeout=120)
    _settled(rep)
    assert_exact(src, dst)
    counts = rep.statistics()["watcher"]
    assert counts["events"] > 400 and counts["files rehashed"] > 50


@pytest.mark.parametrize("method", METHODS)
def test_changes_made_during_the_initial_mirror_are_not_missed(pair, tmp_path, method):
    engine, repset, conn, src, dst, _ = pair
    for i in range(300):
        (src / f"f{i:03d}").write_bytes(os.urandom(20000))
    writer = subprocess.Popen([sys.executable, str(WRITER), str(src), "11", "300"])
    try:
        rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"), watch=method,
                               mirror="full")
    finally:
        assert writer.wait(120) == 0
    _settled(rep)
    assert_exact(src, dst)


def test_only_changed_blocks_go_and_a_file_seen_first_is_compared_with_the_target(pair, tmp_path):
    engine, repset, conn, src, dst, _ = pair
    big = src / "db.img"
    big.write_bytes(os.urandom(8 << 20))
    rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"), watch=True,
                           mirror="full")
    _settled(rep)
    sent = conn.counters["conBytesTx"]
    with open(big, "r+b") as f:  # ten 8 KiB pages, then an append
        for k in range(10):
            f.seek(k * 700 * 1024)
            f.write(os.urandom(8192))
        f.seek(0, os.SEEK_END)
        f.write(b"tail" * 1000)
    _settled(rep)
    assert_exact(src, dst)
    wire = conn.counters["conBytesTx"] - sent
    assert 10 * 8192 <= wire < 10 * 12288 + 64 * 1024, wire
    assert rep.statistics()["watcher"]["bytes sent"] < 200 * 1024


@pytest.mark.parametrize("method", METHODS)
def test_a_folder_of_thousands_renamed_is_one_op_on_the_wire(pair, tmp_path, method):
    engine, repset, conn, src, dst, _ = pair
    (src / "album").mkdir()
    for i in range(3000):
        (src / "album" / f"photo{i:04d}.jpg").write_bytes(os.urandom(1024))
    rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"), watch=method,
                           mirror="full")
    _settled(rep)
    sent, ops = conn.counters["conBytesTx"], conn.counters["conOpsTx"]
    os.rename(src / "album", src / "album-2026")
    _settled(rep)
    assert_exact(src, dst)
    assert conn.counters["conBytesTx"] - sent < 4096  # the rename and a few folder times
    assert conn.counters["conOpsTx"] - ops <= 5


def _sysctl(name, value):
    path = Path("/proc/sys/fs") / name
    old = path.read_text().strip()
    path.write_text(str(value))
    return old


@pytest.mark.parametrize("method", METHODS)
def test_an_overflowing_event_queue_is_healed_by_a_difference_mirror(pair, tmp_path, method,
                                                                     seen_events):
    engine, repset, conn, src, dst, _ = pair
    if os.geteuid() != 0:
        pytest.skip("a tiny event queue needs root (sysctl)")
    knob = "fanotify/max_queued_events" if method == "fanotify" else "inotify/max_queued_events"
    rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"))
    old = _sysctl(knob, 16)
    try:  # the limit is read when the queue is made
        rep.watch(method, unlimited=False)
    finally:
        _sysctl(knob, old)
    (src / "many").mkdir()
    subprocess.run("cd many && seq 4000 | xargs touch && seq 4000 | sed 's/$/.x/' | xargs touch",
                   shell=True, cwd=src, check=True)
    deadline = time.monotonic() + 60
    while rep.heals == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rep.statistics()["watcher"]["overflows"] >= 1
    assert rep.heals >= 1
    # the queue may overflow again after the first heal: wait until the
    # watcher has read everything (no new overflow or heal for a second)
    # and no remirror is owed
    quiet_since, seen = time.monotonic(), None
    while time.monotonic() < deadline:
        now = (rep.statistics()["watcher"]["overflows"], rep.heals)
        if now != seen or rep.needs_mirror:
            quiet_since, seen = time.monotonic(), now
        elif time.monotonic() - quiet_since > 1:
            break
        time.sleep(0.05)
    _settled(rep)
    assert_exact(src, dst)
    reasons = [e.fields.get("reason", "") for e in seen_events if e.id == 4065]
    assert any("lost events" in r for r in reasons), reasons


def test_the_inotify_watch_limit_is_reported_clearly(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("lowering the watch limit needs root (sysctl)")
    from dtcore.source.intake.inotify import InotifyWatch
    for i in range(40):
        (tmp_path / f"d{i}").mkdir()
    old = _sysctl("inotify/max_user_watches", 8)
    try:
        with pytest.raises(WatchLimitError, match="max_user_watches = 8"):
            InotifyWatch(os.fsencode(tmp_path))
    finally:
        _sysctl("inotify/max_user_watches", old)


def test_checksums_of_least_recent_files_are_forgotten_and_fetched_again(pair, tmp_path,
                                                                          monkeypatch):
    from dtcore.source.intake import watcher
    monkeypatch.setattr(watcher, "KEEP_FILES", 10)
    engine, repset, conn, src, dst, _ = pair
    rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"), watch=True)
    for i in range(40):
        (src / f"f{i:02d}").write_bytes(os.urandom(20000))
    _settled(rep)
    assert len(rep.watcher.files) <= 10
    assert rep.statistics()["watcher"]["checksums forgotten"] >= 30
    with open(src / "f00", "r+b") as f:  # forgotten: compared with the target's checksums
        f.seek(5000)
        f.write(b"changed")
    _settled(rep)
    assert_exact(src, dst)


def test_a_link_cut_while_the_writer_runs_loses_nothing(pair, tmp_path):
    engine, repset, conn, src, dst, _ = pair
    _base(src)
    rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"), watch=True,
                           mirror="full")
    writer = subprocess.Popen([sys.executable, str(WRITER), str(src), "5", "400"])
    time.sleep(0.3)
    conn.link.fail(OSError("cut by the test"))  # inside whatever was being sent
    assert writer.wait(120) == 0
    deadline = time.monotonic() + 30
    while not conn.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    _settled(rep)
    assert_exact(src, dst)
