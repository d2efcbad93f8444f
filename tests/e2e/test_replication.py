"""Live replication over loopback: ops reported through the API reach the
target in order, once, across link cuts and target restarts."""
import json
import os
import random
import threading
import time

import pytest

from dtcore.engine import Engine
from dtcore.errors import DTError
from dtcore.model.ops import Op, OpKind, pack_batch
from dtcore.protocol.messages import Ack, Flow
from dtcore.source.mirror.options import IN_PROGRESS, MirrorOptions
from dtcore.source.mirror.run import Mirror
from trees import assert_exact

SECRET = "replication-test-secret"


def tree(root):
    """{relative path: ("d",) | ("f", bytes) | ("l", text)} of a folder."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel.startswith(".dtcore"):
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if not (rel == "." and d == ".dtcore")]
        for d in dirs:
            p = os.path.join(dirpath, d)
            out[os.path.normpath(os.path.join(rel, d))] = ("l", os.readlink(p)) if os.path.islink(p) else ("d",)
        for f in files:
            p = os.path.join(dirpath, f)
            key = os.path.normpath(os.path.join(rel, f))
            if os.path.islink(p):
                out[key] = ("l", os.readlink(p))
            else:
                with open(p, "rb") as fh:
                    out[key] = ("f", fh.read())
    return out


def test_ops_through_the_api_reach_the_target(pair, tmp_path):
    engine, repset, conn, src, dst, _ = pair
    rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"))
    (src / "logs").mkdir()
    rep.mkdir("logs")
    with rep.open("logs/app.log", "a") as f:
        for i in range(100):
            f.write(f"line {i}\n")
            f.flush()
    with rep.open("page.db", "wb") as f:
        f.write(b"\0" * 65536)
    with rep.open("page.db", "r+b") as f:
        f.seek(4096)
        f.write(b"P" * 4096)
    with rep.open("gone.txt", "w") as f:
        f.write("soon gone")
    os.rename(src / "logs", src / "archive")
    rep.rename("logs", "archive")
    os.unlink(src / "gone.txt")
    rep.delete("gone.txt")
    os.symlink("archive/app.log", src / "latest")
    rep.symlink("latest", "archive/app.log")
    assert rep.drain(30)
    assert tree(dst) == tree(src)
    stats = rep.statistics()
    assert stats["status"] == "Ready"
    assert stats["ConRPL"] == 0
    assert stats["merge"]["ops_in"] >= stats["merge"]["ops_out"] > 0
    assert conn.counters["conOpsInAckQueue"] == 0
    snap = engine.statistics()
    assert snap.value("server", "RepOpsGenerated") >= stats["merge"]["ops_in"]
    assert snap.value("server", "RepBytesGenerated") > 65536
    assert snap.value("connection", "ConRPL") == 0
    assert snap.value("connection", "conOpsInRepQueue") == 0


def test_packed_batches_merge_and_apply(pair, tmp_path):
    engine, repset, conn, src, dst, _ = pair
    rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"))
    ops = [Op(OpKind.CREATE, 1, 0, b"f", 0o644)]
    ops += [Op(OpKind.WRITE, 1, 0, b"f", i * 64, bytes([i % 256]) * 64) for i in range(1000)]
    rep.submit(pack_batch(ops))
    assert rep.drain(30)
    assert (dst / "f").read_bytes() == b"".join(bytes([i % 256]) * 64 for i in range(1000))
    merge = rep.statistics()["merge"]
    assert merge["ops_in"] == 1001 and merge["ops_out"] < 10


def test_bodies_handed_over_and_bodies_through_the_queue_apply_in_order(pair, tmp_path,
                                                                         monkeypatch):
    """An applier held up for a while: the first bodies are handed over
    whole, the rest wait in the queue ring, and the stream still applies in
    the order it was sent."""
    from dtcore.apply.applier import Applier
    from dtcore.target.handoff import Handoff
    engine, repset, conn, src, dst, _ = pair
    lent = []  # per body: handed over (True) or through the ring (False)
    claim = Handoff.claim

    def counted_claim(self, body, kind):
        got = claim(self, body, kind)
        lent.append(got is not None)
        return got
    monkeypatch.setattr(Handoff, "claim", counted_claim)
    slow = [0]
    apply_one = Applier._apply_one

    def held_up(self, op):
        slow[0] += 1
        if slow[0] < 60:
            time.sleep(0.01)
        apply_one(self, op)
    monkeypatch.setattr(Applier, "_apply_one", held_up)
    rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"))
    rep.create("page")
    rep.create("log")
    # random and never repeated within a batch: frames go uncompressed
    pages = [os.urandom(4096) for _ in range(120)]
    logs = [os.urandom(4096) for _ in range(120)]
    for i in range(120):
        rep.submit(pack_batch([Op(OpKind.WRITE, 1, i, b"page", 0, pages[i]),
                               Op(OpKind.WRITE, 2, i, b"log", i * 4096, logs[i])]))
        if i >= 60:  # the applier is no longer held up: it keeps up with the stream
            assert rep.drain(30)
    assert rep.drain(60)
    assert (dst / "page").read_bytes() == pages[-1]
    assert (dst / "log").read_bytes() == b"".join(logs)
    assert lent.count(True) >= 5 and lent.count(False) >= 5  # both ways, many times


def test_link_cut_resends_unacknowledged_batches_once(pair, tmp_path):
    engine, repset, conn, src, dst, _ = pair
    rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"))
    rep.create("counter")
    for i in range(200):
        rep.write("counter", i * 8, i.to_bytes(8, "little"))
        if i % 50 == 25:
            rep.flush()
            conn.link.fail(OSError("cut by the test"))
    assert rep.drain(60)
    data = (dst / "counter").read_bytes()
    assert data == b"".join(i.to_bytes(8, "little") for i in range(200))
    assert engine.stats.server["autoReConnects"] >= 1


def test_queued_ops_outlive_a_restart_of_the_source(tmp_path):
    src, dst, q = tmp_path / "src", tmp_path / "dst", str(tmp_path / "q")
    src.mkdir()
    with Engine(secret=SECRET, QLogWriteThrough=1) as e1:
        target = e1.start_target(dst, port=0)
        repset = e1.replication_set(src)
        conn = e1.connect(repset, port=target.port, target_path="data")
        rep = e1.replicate(conn, repset, directory=q)
        rep.create("a")
        rep.write("a", 0, b"first run")
        target.stop()  # nothing more is applied: the rest stays in the journal
        rep.write("a", 9, b", still first run")
        assert not rep.close(timeout=0)
    with Engine(secret=SECRET, QLogWriteThrough=1) as e2:
        target = e2.start_target(dst, port=0)
        repset = e2.replication_set(src)
        conn = e2.connect(repset, port=target.port, target_path="data")
        target.stop()  # a replication starts with its target down, and waits for it
        rep = e2.replicate(conn, repset, directory=q)
        assert rep.status == "Pending"
        assert rep.statistics()["conOpsInRepQueue"] == 3
        target = e2.start_target(dst, port=target.port)
        assert rep.drain(30)
        assert rep.statistics()["ConRPL"] == 0
        assert (dst / "data" / "a").read_bytes() == b"first run, still first run"


def test_a_restarted_target_gets_what_it_had_not_acknowledged(engine, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    target = engine.start_target(dst, port=0)
    port = target.port
    repset = engine.replication_set(src)
    conn = engine.connect(repset, port=port, target_path="data")
    rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"))
    rep.create("a")
    assert rep.drain(30)
    target.stop()
    for i in range(50):
        rep.write("a", i, bytes([65 + i % 26]))
    rep.flush()
    engine.start_target(dst, port=port)
    assert rep.drain(60)
    assert (dst / "data" / "a").read_bytes() == bytes(65 + i % 26 for i in range(50))
    assert rep.stream.applied == rep.pipeline.state.last_seq()


def test_queue_exhaustion_refuses_ops_loudly_and_heals(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    events = []
    with Engine(secret=SECRET, QMemoryBufferMax=32, MemoryQueueToDiskThreshold=25,
                QJournalSpaceMax=4, QJournalFileSize=1) as engine:
        unsubscribe = engine.subscribe(lambda e: events.append(e.id))
        target = engine.start_target(dst, port=0)
        port = target.port
        repset = engine.replication_set(src)
        conn = engine.connect(repset, port=port, target_path="data")
        rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"))
        target.stop()
        block = os.urandom(65536)
        accepted = 0
        f = rep.open("big", "wb", buffering=0)
        with pytest.raises(DTError) as refused:
            for _ in range(4096):  # 256 MiB: far past memory and journal
                f.write(block)
                accepted += 1
        assert refused.value.code == -175, refused.value
        assert 128 <= accepted < 4096  # memory (8 MB) and journal (4 MB) took some
        assert rep.status == "Out of Memory"
        with pytest.raises(DTError):  # and the next such call, while it is full
            f.write(block)
        try:
            f.close()  # its SETATTR may be refused as well; the file closes anyway
        except DTError:
            pass
        assert f.closed
        assert 4007 in events
        queue = rep.statistics()
        assert queue["conBytesInDiskQueue"] > 0
        engine.start_target(dst, port=port)
        # the queued ops arrive, then the remirror brings what was refused
        deadline = time.monotonic() + 60
        while rep.needs_mirror or rep.stream.pending():
            assert time.monotonic() < deadline, rep.statistics()
            time.sleep(0.05)
        assert rep.drain(30)
        assert (dst / "data" / "big").read_bytes() == (src / "big").read_bytes()
        assert rep.status == "Ready"
        unsubscribe()


def test_a_damaged_journal_is_set_aside_and_the_target_remirrored(tmp_path):
    src, dst, q = tmp_path / "src", tmp_path / "dst", tmp_path / "q"
    src.mkdir()
    events = []
    with Engine(secret=SECRET, QLogWriteThrough=1) as e1:
        target = e1.start_target(dst, port=0)
        repset = e1.replication_set(src)
        conn = e1.connect(repset, port=target.port, target_path="data")
        rep = e1.replicate(conn, repset, directory=str(q))
        target.stop()
        with rep.open("f", "wb") as f:
            f.write(b"x" * 10000)
        rep.close(timeout=0)
    segment = max((q / "journal").glob("*.seg"))
    data = bytearray(segment.read_bytes())
    data[100] ^= 0xFF  # inside the first record
    segment.write_bytes(bytes(data))
    with Engine(secret=SECRET, QLogWriteThrough=1) as e2:
        e2.subscribe(lambda e: events.append(e.id))
        target = e2.start_target(dst, port=0)
        repset = e2.replication_set(src)
        conn = e2.connect(repset, port=target.port, target_path="data")
        rep = e2.replicate(conn, repset, directory=str(q))
        assert 4070 in events
        assert list(q.glob("journal.damaged-*"))
        assert rep.drain(30)
        assert (dst / "data" / "f").read_bytes() == b"x" * 10000  # by the remirror


def test_ops_during_a_mirror_leave_the_target_right(pair, tmp_path):
    engine, repset, conn, src, dst, _ = pair
    rng = random.Random(3)
    (src / "dir").mkdir()
    for i in range(200):
        (src / "dir" / f"f{i:03d}").write_bytes(rng.randbytes(rng.randrange(1, 40000)))
    (src / "big").write_bytes(rng.randbytes(8 << 20))
    rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"))
    stop = threading.Event()

    def writer():
        w = random.Random(4)
        n = 0
        while not stop.is_set() and n < 400:
            i = w.randrange(200)
            with rep.open(f"dir/f{i:03d}", "r+b") as f:
                f.seek(w.randrange(40000))
                f.write(w.randbytes(w.randrange(1, 3000)))
            with rep.open("big", "r+b") as f:
                f.seek(w.randrange(8 << 20))
                f.write(w.randbytes(4096))
            with rep.open(f"new{n}", "wb") as f:
                f.write(w.randbytes(100))
            if n % 5 == 0:
                os.rename(src / f"new{n}", src / "dir" / f"moved{n}")
                rep.rename(f"new{n}", f"dir/moved{n}")
            n += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        result = engine.mirror(conn, repset, "full")
    finally:
        stop.set()
        t.join()
    assert result.files > 0
    assert rep.drain(60)
    assert tree(dst) == tree(src)


def test_what_changed_after_the_listing_gets_the_times_of_what_the_mirror_read(pair, tmp_path):
    # a full mirror again, one pass alone (no difference pass to mend it):
    # files, a folder and a symlink change after it listed them and before
    # it sends them, and the replication applies those changes first
    engine, repset, conn, src, dst, _ = pair
    (src / "d").mkdir()
    for i in range(30):
        (src / "d" / f"f{i:02d}").write_bytes(os.urandom(200_000))
    os.symlink("d/f00", src / "link")
    engine.mirror(conn, repset, "full")
    rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"))
    changed = []

    def change(mirror):
        if changed or mirror.status != IN_PROGRESS:  # listed, nothing sent yet
            return
        changed.append(True)
        for i in range(10, 30):
            with rep.open(f"d/f{i:02d}", "ab") as f:
                f.write(b"appended after the listing")
        os.unlink(src / "link")
        os.symlink("d/f29", src / "link")
        rep.delete("link")
        rep.symlink("link", "d/f29")
        t = time.time_ns() - 10**9
        for p in ("d", "link"):
            os.utime(src / p, ns=(t, t), follow_symlinks=False)
            st = os.lstat(src / p)
            rep.setattr(p, mode=None if p == "link" else st.st_mode & 0o7777,
                        atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns)
        deadline = time.monotonic() + 10  # the target has them before the mirror reads them
        while os.path.getsize(dst / "d" / "f29") != os.path.getsize(src / "d" / "f29") and \
                time.monotonic() < deadline:
            time.sleep(0.01)

    opts = MirrorOptions.from_config(engine.config, mode="full", workers=1)
    conn.tx.mirroring += 1  # as Engine.mirror runs one
    try:
        Mirror(conn, repset, opts, progress=change).run()
    finally:
        conn.tx.mirroring -= 1
    assert changed and rep.drain(30)
    assert_exact(src, dst)


def test_a_name_renamed_during_the_last_difference_pass_reaches_the_target(pair, tmp_path,
                                                                           monkeypatch):
    # In the main mirror and in each difference pass after it, right after the
    # pass has listed the set, a file the target does not have (written
    # without a report, as one whose ops were still in flight) is renamed and
    # the rename reported: the pass finds the old name gone, and the
    # target's RENAME finds nothing to rename.  Only the target can tell the
    # source that; without it the name made in the last pass stays missing.
    engine, repset, conn, src, dst, _ = pair
    (src / "seed").write_bytes(b"mirrored first")
    engine.mirror(conn, repset, "full")
    rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"))
    passes: list[Mirror] = []
    real = Mirror._set_status

    def listed(self, status):
        real(self, status)
        if status != IN_PROGRESS or self in passes:
            return
        k = len(passes)
        passes.append(self)
        if k == 0:  # the main mirror: an op arrives, so a pass follows
            rep.write("seed", 0, b"M")
            os.utime(src / "seed")  # a change of its own, not only the op's
        elif k <= 2:
            os.rename(src / f"late{k}", src / f"renamed{k}")
            rep.rename(f"late{k}", f"renamed{k}")
        if k < 2:  # listed by the next pass, unknown to the target
            (src / f"late{k + 1}").write_bytes(b"x" * (1000 + k))
        rep.flush()

    monkeypatch.setattr(Mirror, "_set_status", listed)
    with open(src / "seed", "r+b") as f:
        f.write(b"M")
    engine.mirror(conn, repset, "difference", checksum=False)
    monkeypatch.setattr(Mirror, "_set_status", real)
    assert len(passes) >= 3  # the main mirror and both passes renamed something
    assert rep.drain(30)
    assert (dst / "renamed2").read_bytes() == b"x" * 1001
    assert_exact(src, dst)
    rep.close()


def test_a_name_reported_missing_after_the_mirror_ended_is_healed(pair, tmp_path):
    # an op sent during a mirror but applied after it ended reports its miss
    # late: once the replication has seen everything of the mirror's time
    # applied, it looks at the names and remirrors for one the source has
    engine, repset, conn, src, dst, _ = pair
    engine.mirror(conn, repset, "full")
    rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"))
    (src / "late").write_bytes(b"the target never heard of it")
    conn.tx.on_ack(0, json.dumps(Ack(missed=(b"late", b"gone too")).fields()).encode())
    rep.check_missed_after(rep.pipeline.state.last_seq())
    deadline = time.monotonic() + 20
    while not (dst / "late").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (dst / "late").read_bytes() == b"the target never heard of it"
    assert rep.heals == 1
    rep.close()


def test_a_paused_mirror_does_not_hold_replication(pair, tmp_path):
    engine, repset, conn, src, dst, _ = pair
    rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"))
    conn.tx.on_flow(Flow(True, -147).fields())  # as the target says when its memory fills
    sent = threading.Thread(target=conn.send_ops, args=(
        [Op(OpKind.CREATE, 0, 1, b"mirrored", 0o644)],), kwargs={"mirror": True})
    sent.start()
    rep.create("replicated")
    rep.write("replicated", 0, b"goes while the mirror waits")
    assert rep.drain(10)
    assert (dst / "replicated").read_bytes() == b"goes while the mirror waits"
    assert not (dst / "mirrored").exists()  # the mirror frame still waits
    conn.tx.on_flow(Flow(False, -148).fields())
    sent.join(10)
    conn.flush(10)
    assert (dst / "mirrored").exists()
