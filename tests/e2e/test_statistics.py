"""Every chapter 3 statistic that applies moves in a running engine: a real
mirror, orphans, a refused login, live replication with a link cut, and a
target whose disk is full, sampled every few milliseconds.  The ones that
cannot apply say so (stats.NOT_APPLICABLE); the two that need a failing
disk read are named below with why."""
from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest

from dtcore.control.stats import NOT_APPLICABLE, SECTIONS
from dtcore.engine import Engine
from dtcore.errors import AccessDeniedError, DTError
from dtcore.model.repset import ReplicationSet

pytestmark = pytest.mark.timeout(180)
SECRET = "statistics-test-secret"
# they count disk read errors of the source; no test here makes a disk fail
_TARGET = [f for f in SECTIONS["target"] if f[0] != "*"]
DROPPED, RETRIES = _TARGET.index("OpsDropped"), _TARGET.index("Retries")
NEEDS_A_FAILING_READ = {"FailedRepCount": "a changed file the watcher cannot read (EIO)"}


class Sampler:
    """Snapshots every 5 ms; remembers every statistic that ever differed
    from zero or from its first value."""

    def __init__(self, engine):
        self.engine, self.moved, self.first = engine, set(), {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _take(self):
        snap = self.engine.statistics()
        rows = [("server", snap.server)] + [("target", v) for v, _ in snap.targets] + \
            [("connection", v) for v, _ in snap.connections]
        for section, values in rows:
            numeric = [f.lstrip("@") for f in SECTIONS[section] if f[0] != "*"]
            for name, value in zip(numeric, values.tolist()):
                first = self.first.setdefault(name, value)
                if value != first or value != 0:
                    self.moved.add(name)

    def _run(self):
        while not self._stop.wait(0.005):
            self._take()

    def stop(self):
        self._stop.set()
        self._thread.join()
        self._take()


def _wait(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


def test_every_statistic_that_applies_moves(tmp_path, small_disk):
    src, full_src = tmp_path / "src", tmp_path / "src2"
    src.mkdir()
    full_src.mkdir()
    for i in range(20):
        (src / f"f{i:02d}.bin").write_bytes(os.urandom(256 << 10))
    (src / "big.bin").write_bytes(os.urandom(8 << 20))
    (src / "gone.bin").write_bytes(b"g" * 1000)
    with Engine(secret=SECRET, LogDir=str(tmp_path / "logs"), statistics=False,
                QMemoryBufferMax=32, MemoryQueueToDiskThreshold=1) as engine:
        sampler = Sampler(engine)
        target = engine.start_target(tmp_path / "dst", port=0)
        with Engine(secret="wrong", statistics=False, log=False) as intruder:
            with pytest.raises(AccessDeniedError):
                intruder.connect(ReplicationSet(src), port=target.port, target_path="x")
        repset = ReplicationSet(src)
        conn = engine.connect(repset, port=target.port, target_path="data")

        def vanish(m):  # after the listing, before the files are read
            if m.status == "In Progress" and (src / "gone.bin").exists():
                (src / "gone.bin").unlink()
        engine.mirror(conn, repset, "full", progress=vanish)
        (tmp_path / "dst" / "data" / "orphan-dir").mkdir()
        (tmp_path / "dst" / "data" / "orphan-dir" / "o.txt").write_bytes(b"o" * 100)
        (src / "f01.bin").write_bytes(os.urandom(256 << 10))
        engine.mirror(conn, repset, "difference", orphans=True)

        # live: a watched replication, its link cut while it sends
        rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"), watch=True)
        stop = threading.Event()

        def write():
            while not stop.is_set():
                with open(src / "log.txt", "ab") as f:
                    f.write(os.urandom(64 << 10))
                time.sleep(0.002)
        writer = threading.Thread(target=write)
        writer.start()
        for _ in range(4):  # the target's end reset mid-stream, a few times over:
            time.sleep(0.4)  # what sat unread in its socket is lost and must be resent
            for session in list(target._sessions):
                if session.link is not None and not session.link.closed:
                    sock = session.link.ch.sock
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()
        time.sleep(0.5)
        stop.set()
        writer.join()
        assert _wait(lambda: rep.drain(1) and conn.alive, 60)

        sampler.stop()
        rep.close(10)
    # a target whose disk is full (an engine of its own, its queues kept in
    # memory): retries, a queue on the target, a growing recovery point, then
    # ops given up
    with Engine(secret=SECRET, LogDir=str(tmp_path / "logs2"), statistics=False,
                TGRetryLocked=1, TGExecutionRetryLimit=3) as slow:
        sampler2 = Sampler(slow)
        full = slow.start_target(small_disk, port=0)
        (full_src / "seed").write_bytes(b"s")
        frepset = ReplicationSet(full_src)
        fconn = slow.connect(frepset, port=full.port, target_path="job")
        frep = slow.replicate(fconn, frepset, directory=str(tmp_path / "q2"), watch=True,
                              mirror="full")
        (full_src / "huge.bin").write_bytes(os.urandom(6 << 20))

        def given_up():  # TGExecutionRetryLimit tries, a second apart, then dropped
            return any(v[DROPPED] and v[RETRIES] >= 3 for v, _ in slow.statistics().targets)
        assert _wait(given_up, 30)
        sampler2.stop()
        try:
            frep.close(1)
        except DTError:
            pass
    sampler.moved |= sampler2.moved
    applicable = {f.lstrip("@*") for fields in SECTIONS.values() for f in fields
                  if f[0] != "*"} - set(NOT_APPLICABLE) - set(NEEDS_A_FAILING_READ)
    assert sorted(applicable - sampler.moved) == []
