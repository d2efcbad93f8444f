import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import google_crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from queue_child import record

from dtcore._native import _queue
from dtcore.errors import (
    InvalidParameterError,
    QueueClosedError,
    QueueCorruptError,
    QueueLogFileError,
    TargetDiskFullError,
)
from dtcore.queues.journal import DiskQueue
from dtcore.queues.memory import MemoryQueue
from dtcore.queues.records import MIRROR, REPLICATION
from dtcore.queues.replication import ReplicationQueue
from threads import run_threads

HERE = Path(__file__).parent


def disk(path, **kw):
    kw.setdefault("segment_bytes", 4096)
    kw.setdefault("free_min_mb", 0)
    return DiskQueue(path, **kw)


# ---- CRC-32C ----

@pytest.mark.parametrize("impl", [0, 1, 2])
@given(data=st.binary(max_size=3000), split=st.integers(0, 3000))
def test_crc32c_matches_google_crc32c(impl, data, split):
    """Each implementation the CPU has (select falls back to one it has)."""
    _queue.crc32c_select(impl)
    try:
        assert _queue.crc32c(data) == google_crc32c.value(data)
        head, tail = data[:split], data[split:]
        assert _queue.crc32c(tail, _queue.crc32c(head)) == google_crc32c.value(data)
    finally:
        _queue.crc32c_select(-1)


@pytest.mark.parametrize("impl", [1, 2])
@settings(max_examples=30, deadline=None)
@given(size=st.integers(3 * 4096 - 8, 5 * 3 * 4096 + 40), skip=st.integers(0, 7),
       seed=st.integers(0, 2**32 - 1))
def test_crc32c_long_buffers_match_google_crc32c(impl, size, skip, seed):
    """Buffers long enough for the three-lane and the folding paths, at every
    alignment."""
    _queue.crc32c_select(impl)
    try:
        data = random.Random(seed).randbytes(size + skip)
        assert _queue.crc32c(memoryview(data)[skip:]) == google_crc32c.value(data[skip:])
    finally:
        assert _queue.crc32c_select(-1) in (0, 1, 2)


# ---- memory queue ----

def test_memory_queue_keeps_order_and_counts_by_kind():
    q = MemoryQueue(1 << 16)
    assert q.push([b"r1", b"r22"], ops=[2, 3]) == 2
    assert q.push([b"m333"], ops=5, kind=MIRROR) == 1
    c = q.counts()
    assert (c["rep_ops"], c["rep_bytes"], c["mir_ops"], c["mir_bytes"]) == (5, 5, 5, 4)
    assert q.pop(meta=True) == [(b"r1", 2, REPLICATION), (b"r22", 3, REPLICATION),
                                (b"m333", 5, MIRROR)]
    c = q.counts()
    assert (c["records"], c["rep_ops"], c["mir_bytes"], c["pool_used"]) == (0, 0, 0, 0)
    assert (c["rep_ops_hw"], c["mir_bytes_hw"]) == (5, 4)


def test_memory_queue_bounds_bytes_and_ops():
    q = MemoryQueue(8192)
    rec = bytes(1000)
    assert q.push([rec] * 20, timeout=0) == 8  # 1008 ring bytes each
    assert q.pop(3) == [rec] * 3
    assert q.push([rec] * 20, timeout=0.01) == 3
    limited = MemoryQueue(1 << 16, max_ops=10)
    assert limited.push([b"x"] * 5, ops=3, timeout=0) == 3
    assert limited.pop(1) == [b"x"]
    assert limited.push([b"y"], ops=3, timeout=0) == 1


def test_memory_queue_timeouts_and_close_wake_waiters():
    q = MemoryQueue(8192)
    t = time.monotonic()
    assert q.pop(timeout=0.05) == []
    assert time.monotonic() - t >= 0.04
    got = []
    waiter = threading.Thread(target=lambda: got.append(q.pop(timeout=10)))
    waiter.start()
    time.sleep(0.05)
    q.push([b"late"])
    waiter.join(5)
    assert got == [[b"late"]]
    q.push([bytes(3000)] * 2)
    blocked = []
    pusher = threading.Thread(target=lambda: blocked.append(
        pytest.raises(QueueClosedError, q.push, [bytes(3000)], timeout=10)))
    pusher.start()
    time.sleep(0.05)
    q.close()
    pusher.join(5)
    assert blocked and not pusher.is_alive()
    assert len(q.pop(10)) == 2  # close drains what is left
    with pytest.raises(QueueClosedError):
        q.pop(timeout=1)


def _anon_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))


def test_a_closed_queue_gives_its_ring_back_when_released():
    q = MemoryQueue(max_bytes=128 << 20, max_ops=1 << 20)
    chunk = os.urandom(1 << 20)
    for _ in range(96):  # fill most of the ring: its pages become resident
        assert q.push([chunk]) == 1
    while q.pop(64, timeout=0, max_bytes=64 << 20):
        pass
    busy = _anon_kib()
    q.release()  # still open: nothing happens
    assert q.push([b"kept"]) == 1 and q.counts()["records"] == 1
    q.close()
    q.release()
    assert _anon_kib() < busy - 64 * 1024  # most of the 96 MiB went back
    assert q.counts()["records"] == 0
    with pytest.raises(QueueClosedError):
        q.pop(1, timeout=0)


def test_a_queue_that_keeps_up_reuses_the_start_of_its_ring():
    """256 MiB through a 256 MiB ring, each record popped soon after its
    push: the ring starts over once 8 MiB in, so few of its pages are ever
    touched, and fillers never count as queued bytes."""
    q = MemoryQueue(max_bytes=256 << 20, max_ops=1 << 20)
    chunk = os.urandom(1 << 20)
    before = _anon_kib()
    for i in range(256):
        assert q.push([chunk]) == 1
        if i % 3 == 2:  # a small backlog, as a consumer a little behind keeps
            while q.counts()["pool_used"] > 1 << 20 + 1:
                assert q.pop(1, timeout=0, max_bytes=2 << 20)
        assert q.counts()["pool_used"] <= 3 * ((1 << 20) + 8)
    assert _anon_kib() - before < 48 * 1024
    got = 0
    while q.pop(64, timeout=0, max_bytes=64 << 20):
        got += 1
    assert q.counts()["records"] == 0 and q.counts()["pool_used"] == 0


def test_memory_queue_rejects_oversized_records():
    q = MemoryQueue(8192)
    with pytest.raises(InvalidParameterError):
        q.push([bytes(q.max_record + 1)])
    assert q.push([bytes(q.max_record)]) == 1
    assert len(q.pop(max_bytes=16)[0]) == q.max_record  # the pop buffer grows
    with pytest.raises(TypeError):
        q.push(["text"])


def test_memory_queue_many_producers_one_consumer():
    q = MemoryQueue(64 * 1024)
    n, producers = 20000, 4

    def produce(p):
        for i in range(0, n, 100):
            q.push([b"%d:%d" % (p, j) for j in range(i, i + 100)])

    got = []

    def consume():
        while len(got) < n * producers:
            got.extend(q.pop(500, timeout=5))

    consumer = threading.Thread(target=consume)
    consumer.start()
    run_threads(produce, producers)
    consumer.join(30)
    last = {}
    for rec in got:
        p, j = map(int, rec.split(b":"))
        assert j == last.get(p, -1) + 1  # each producer's order is kept
        last[p] = j
    assert all(v == n - 1 for v in last.values())


def test_native_pair_moves_every_record():
    assert _queue.bench_pair(1 << 20, 64, 256, 200_000) > 0


# ---- disk queue ----

def test_disk_queue_round_trip_across_segments_and_reopen(tmp_path):
    q = disk(tmp_path)
    recs = [record(i) for i in range(300)]
    q.push(recs[:150], ops=2)
    q.push(recs[150:], kind=MIRROR)
    c = q.counts()
    assert c["segments"] > 3 and c["records"] == 300
    assert (c["rep_ops"], c["mir_ops"]) == (300, 150)
    assert q.pop(100) == recs[:100]
    q.close()
    q = disk(tmp_path)
    assert q.counts()["records"] == 200
    assert q.pop(1000) == recs[100:]
    assert q.pop() == []
    q.close()
    assert disk(tmp_path).counts()["records"] == 0


def test_consumed_segments_are_deleted(tmp_path):
    q = disk(tmp_path)
    q.push([bytes(1000)] * 40)
    assert len(list(tmp_path.glob("*.seg"))) == q.counts()["segments"] > 10
    q.pop(40)
    q.commit()
    assert len(list(tmp_path.glob("*.seg"))) == q.counts()["segments"] == 1
    q.close()


def test_uncommitted_pops_come_back_after_a_crash(tmp_path):
    script = ("import os, sys; from dtcore.queues.journal import DiskQueue; "
              "q = DiskQueue(sys.argv[1], segment_bytes=1 << 20, free_min_mb=0); "
              "q.push([b'a', b'b', b'c']); q.commit(); assert q.pop(2) == [b'a', b'b']; "
              "os._exit(0)")  # no close: the position stays where it was committed
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=60)
    assert disk(tmp_path, segment_bytes=1 << 20).pop() == [b"a", b"b", b"c"]


def test_write_through_group_commit_shares_syncs(tmp_path):
    q = disk(tmp_path, segment_bytes=1 << 20, write_through=True)
    run_threads(lambda t: [q.push([b"%d-%d" % (t, i)]) for i in range(100)], 4)
    c = q.counts()
    assert c["pushed"] == 400 and 1 <= c["syncs"] <= 400
    q.close()


def test_write_through_segments_are_preallocated_then_trimmed(tmp_path):
    q = disk(tmp_path, segment_bytes=1 << 20, write_through=True)
    q.push([b"x" * 100] * 3)
    (seg,) = tmp_path.glob("*.seg")
    assert seg.stat().st_size == 1 << 20  # zeros ahead, so syncs flush data only
    q.push([b"y" * 5000] * 300)  # rolls: each full segment is trimmed to its data
    full = sorted(tmp_path.glob("*.seg"))[:-1]
    assert full and all(p.stat().st_size < 1 << 20 for p in full)
    used = q.counts()["disk_bytes"]
    q.close()
    assert sum(p.stat().st_size for p in tmp_path.glob("*.seg")) == used


def test_crash_leaves_zeros_that_reopen_reads_as_the_end(tmp_path):
    script = ("import os, sys; from dtcore.queues.journal import DiskQueue; "
              "q = DiskQueue(sys.argv[1], segment_bytes=1 << 20, free_min_mb=0, write_through=True); "
              "q.push([b'a' * 10, b'b' * 20]); os._exit(0)")
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=60)
    q = disk(tmp_path, segment_bytes=1 << 20)
    c = q.counts()
    assert c["records"] == 2 and not c["corrupt"] and q.torn_bytes == 0
    assert q.pop() == [b"a" * 10, b"b" * 20]
    q.close()


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.one_of(st.integers(0, 5000), st.integers(16 << 10, 70_000)), min_size=1,
                      max_size=40),
       cuts=st.lists(st.integers(1, 40), max_size=4), popped=st.integers(0, 40),
       write_through=st.booleans())
def test_large_and_small_records_round_trip(tmp_path_factory, sizes, cuts, popped, write_through):
    """Records from 16 KiB on are written from the caller's buffer, between
    small ones copied into the write buffer, across segment ends and a reopen."""
    path = tmp_path_factory.mktemp("mixed")
    recs = [bytes([i % 251]) * s for i, s in enumerate(sizes)]
    q = disk(path, segment_bytes=128 << 10, write_through=write_through)
    bounds = sorted({0, len(recs), *[c for c in cuts if c < len(recs)]})
    for a, b in zip(bounds, bounds[1:]):
        assert q.push(recs[a:b]) == b - a
    got = q.pop(popped, max_bytes=8 << 20) if popped else []
    assert got == recs[:len(got)]
    q.close()
    q = disk(path, segment_bytes=128 << 10)
    assert q.counts()["rep_bytes"] == sum(len(r) for r in recs[len(got):])
    rest = []
    while batch := q.pop(1000, max_bytes=8 << 20):
        rest.extend(batch)
    assert got + rest == recs
    q.close()


def test_failed_write_leaves_counts_true(tmp_path):
    """A write the file system refuses (RLIMIT_FSIZE: EFBIG) raises, and the
    records it carried are neither counted nor kept: what reopens is exactly
    what push reported."""
    script = r"""
import resource, signal, sys
from dtcore.errors import QueueLogFileError
from dtcore.queues.journal import DiskQueue
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
q = DiskQueue(sys.argv[1], segment_bytes=1 << 20, free_min_mb=0)
small, big = b"s" * 100, b"B" * 40_000
done = 0
try:
    for i in range(100):
        done += q.push([small, big, big, small])
except QueueLogFileError as e:
    assert e.errno == 27, e  # EFBIG
    print(done, q.counts()["records"])
"""
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=60,
                         capture_output=True, text=True).stdout.split()
    done, counted = int(out[0]), int(out[1])
    # the failing push's first small record waits in the write buffer, still
    # counted; the large ones gathered after it are not
    assert done > 0 and done <= counted <= done + 1
    q = disk(tmp_path, segment_bytes=1 << 20)
    got = []
    while batch := q.pop(1000, max_bytes=8 << 20):
        got.extend(batch)
    q.close()
    assert done <= len(got) <= counted
    assert got == ([b"s" * 100, b"B" * 40_000, b"B" * 40_000, b"s" * 100] * done)[:len(got)]


@settings(max_examples=40, deadline=None)
@given(recs=st.lists(st.tuples(st.binary(max_size=300), st.integers(0, 1000), st.integers(0, 1)),
                     max_size=60),
       take=st.integers(1, 70))
def test_record_batch_matches_the_list_form(tmp_path_factory, recs, take):
    """A RecordBatch holds the same records, ops and kinds as pop(meta=True)."""
    path = tmp_path_factory.mktemp("batch")
    for make in (lambda: MemoryQueue(1 << 20), lambda: disk(path)):
        a, b = make(), MemoryQueue(1 << 20)
        for q in (a, b):
            if recs:
                q.push([r for r, _, _ in recs], ops=[o for _, o, _ in recs],
                       kind=[k for _, _, k in recs])
        while True:
            batch = a.pop(take, batch=True) if isinstance(a, DiskQueue) else \
                a.pop(take, timeout=0, batch=True)
            want = b.pop(take, timeout=0, meta=True)
            assert [(bytes(r), o, k) for r, o, k in zip(batch, batch.ops, batch.kinds)] == want
            assert len(batch) == len(want) and len(batch.data) == sum(len(r) for r, _, _ in want)
            if not want:
                break
        if isinstance(a, DiskQueue):
            a.close()



def test_record_batch_keeps_its_buffer_until_released():
    """A batch's buffer is reused only once no view of it is left: batches
    kept alive (more of them than the pool holds) keep their bytes, and a
    released one's buffer serves the next pop."""
    q = MemoryQueue(1 << 20)
    kept = []
    for i in range(6):
        q.push([bytes([i]) * 1000, bytes([i + 100]) * 10])
        kept.append(q.pop(10, timeout=0, batch=True))
    for i, batch in enumerate(kept):
        assert [bytes(r) for r in batch] == [bytes([i]) * 1000, bytes([i + 100]) * 10]
    with pytest.raises(TypeError):
        kept[0][0][0] = 1  # read-only: the queue owns the bytes
    record = kept[0][1]
    owner = kept[0].data.obj
    del kept[0]
    q.push([b"x" * 1000])
    assert q.pop(10, timeout=0, batch=True).data.obj is not owner  # a record view holds it
    del record
    q.push([b"y" * 1000])
    again = q.pop(10, timeout=0, batch=True)
    assert again.data.obj is owner and bytes(again[0]) == b"y" * 1000
    del again
    q.push([b"z" * 50_000])  # larger than the buffer asked for: it grows, still pooled
    big = q.pop(10, timeout=0, max_bytes=16, batch=True)
    assert big.data.obj is owner and bytes(big[0]) == b"z" * 50_000

def test_prepend_puts_records_in_front(tmp_path):
    q = disk(tmp_path)
    q.push([b"3", b"4", b"5"])
    assert q.pop(1) == [b"3"]
    q.prepend([b"1", b"2"], ops=[7, 8])
    assert q.counts()["rep_ops"] == 7 + 8 + 2
    q.close()
    q = disk(tmp_path)
    assert q.pop() == [b"1", b"2", b"4", b"5"]


def test_space_max_refuses_with_the_queue_log_error(tmp_path, seen_events):
    q = disk(tmp_path, segment_bytes=64 * 1024, space_max_mb=1)
    with pytest.raises(QueueLogFileError) as e:
        for _ in range(100):
            q.push([bytes(64 * 1024)])
    assert e.value.code == -175 and "QJournalSpaceMax" in str(e.value)
    assert [ev.id for ev in seen_events] == [4007]
    assert q.counts()["disk_bytes"] <= 1 << 20
    n = q.counts()["records"]
    assert len(q.pop(1000, max_bytes=64 << 20)) == n  # what was queued is intact


def test_free_space_minimum_refuses_with_disk_full(tmp_path, seen_events):
    st = os.statvfs(tmp_path)
    free_mb = st.f_bavail * st.f_frsize >> 20
    q = disk(tmp_path, free_min_mb=free_mb + 1024)
    with pytest.raises(TargetDiskFullError) as e:
        q.push([b"x"])
    assert e.value.code == -173
    assert seen_events[-1].id == 4007
    assert q.counts()["records"] == 0


def segments(path):
    return sorted(path.glob("*.seg"))


def test_flipped_byte_mid_queue_is_corruption_not_skipped(tmp_path, seen_events):
    q = disk(tmp_path)
    recs = [record(i) for i in range(200)]
    q.push(recs)
    q.close()
    victim = segments(tmp_path)[2]
    data = bytearray(victim.read_bytes())
    data[100] ^= 0x40
    victim.write_bytes(data)
    q = disk(tmp_path)
    assert q.counts()["corrupt"]
    assert seen_events and seen_events[-1].id == 4070
    got = []
    with pytest.raises(QueueCorruptError) as e:
        while batch := q.pop(7):
            got.extend(batch)
    assert got == recs[:len(got)] and len(got) < 200
    assert "remirrored" in str(e.value) and e.value.code == -175


def test_deleted_middle_segment_is_corruption(tmp_path):
    q = disk(tmp_path)
    q.push([record(i) for i in range(200)])
    q.close()
    segments(tmp_path)[3].unlink()
    q = disk(tmp_path)
    assert q.counts()["corrupt"]
    with pytest.raises(QueueCorruptError):
        while q.pop(50):
            pass


@pytest.mark.parametrize("cut", [1, 10, 23, 30])
def test_torn_tail_is_truncated_and_reported(tmp_path, cut):
    q = disk(tmp_path, segment_bytes=1 << 20)
    recs = [record(i) for i in range(50)]
    q.push(recs)
    q.close()
    last = max(segments(tmp_path), key=lambda p: p.stat().st_size)
    last.write_bytes(last.read_bytes()[:-cut])
    q = disk(tmp_path, segment_bytes=1 << 20)
    assert q.torn_bytes > 0 and not q.counts()["corrupt"]
    assert q.pop(100) == recs[:49]
    q.push([b"after"])
    assert q.pop() == [b"after"]


def test_damaged_position_file_is_reported(tmp_path):
    q = disk(tmp_path)
    q.push([b"a"])
    q.close()
    (tmp_path / "dtq.pos").write_bytes(b"garbage" * 6)
    with pytest.raises(QueueCorruptError):
        disk(tmp_path)


# ---- crash ----

def crash_trial(path, rng, producers=1):
    """SIGKILL a child pushing write-through records at a random instant;
    reopened, the queue holds each producer's acknowledged records in its
    order, perhaps some unacknowledged ones after them, and nothing else."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE)] + sys.path))
    child = subprocess.Popen([sys.executable, str(HERE / "queue_child.py"), str(path), "0",
                              str(producers)], stdout=subprocess.PIPE, env=env)
    os.set_blocking(child.stdout.fileno(), False)
    buf = b""
    started = time.monotonic() + 30
    while not buf and time.monotonic() < started:  # the child's start-up is not the trial
        buf += child.stdout.read() or b""
        time.sleep(0.002)
    deadline = time.monotonic() + rng.uniform(0.3, 1.2)
    while time.monotonic() < deadline:
        chunk = child.stdout.read() or b""
        buf += chunk
        time.sleep(0.002)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    buf += child.stdout.read() or b""
    acked = [0] * producers
    for line in buf.split(b"\n")[:-1]:  # the last piece may be cut short
        *thread, n = line.split()
        t = int(thread[0]) if thread else 0
        acked[t] = max(acked[t], int(n))
    q = disk(path, segment_bytes=64 * 1024)
    got = []
    while batch := q.pop(1000, max_bytes=8 << 20):
        got.extend(batch)
    q.close()
    if producers == 1:
        mine = [got]
    else:
        mine = [[r for r in got if r.startswith(b"%02d:" % t)] for t in range(producers)]
        assert sum(map(len, mine)) == len(got), "records no producer pushed"
    for t, recs in enumerate(mine):
        assert len(recs) >= acked[t], f"producer {t} lost acknowledged records: {len(recs)} < {acked[t]}"
        assert recs == [record(i, t if producers > 1 else -1) for i in range(len(recs))]
    return sum(acked)


def test_sigkill_keeps_every_acknowledged_record(tmp_path):
    rng = random.Random(1)
    total = sum(crash_trial(tmp_path / f"t{i}", rng) for i in range(3))
    assert total > 0


def test_sigkill_keeps_every_producers_acknowledged_records(tmp_path):
    """Four producers sharing syncs (group commit) across segment rolls."""
    rng = random.Random(3)
    total = sum(crash_trial(tmp_path / f"t{i}", rng, producers=4) for i in range(4))
    assert total > 0


@pytest.mark.slow
def test_sigkill_many_trials(tmp_path):
    rng = random.Random(2)
    for i in range(50):
        crash_trial(tmp_path / f"t{i}", rng, producers=1 + i % 4)


# ---- the combined queue ----

def test_spill_keeps_fifo_across_memory_and_disk(tmp_path):
    q = ReplicationQueue(tmp_path, memory_bytes=8192, to_disk_threshold=50, segment_bytes=4096,
                         free_min_mb=0)
    recs = [record(i)[:900] for i in range(300)]  # each fits the small memory queue
    for i in range(0, 300, 10):
        q.push(recs[i:i + 10])
    c = q.counts()
    assert c["conBytesInDiskQueue"] > 0 and c["Bytes In Target Queue"] > 0
    got, late = [], False
    while batch := q.pop(17, timeout=0):
        got.extend(batch)
        if len(got) >= 100 and not late:
            q.push([b"late"])  # the disk still holds older records: it queues behind them
            late = True
    assert got == recs + [b"late"]
    q.close()


def test_a_ring_that_started_over_waits_for_its_consumer_rather_than_spill(tmp_path):
    # 12 MiB in and out of a 64 MiB ring leaves its next record to start over
    # at the beginning; until the consumer passes the filler that leaves, the
    # ring takes only 12 MiB more, though 52 are free by its count
    q = ReplicationQueue(tmp_path, memory_bytes=64 << 20, free_min_mb=0)
    rec = bytes(1 << 20)
    q.push([rec] * 12)
    assert len(q.pop(12, timeout=0, max_bytes=16 << 20)) == 12
    got: list[bytes] = []

    def consume() -> None:  # a slow applier: a pop, then a while to apply what it took
        while len(got) < 30:
            time.sleep(0.1)
            got.extend(q.pop(64, timeout=1, max_bytes=64 << 20))

    consumer = threading.Thread(target=consume)
    consumer.start()
    q.push([rec] * 30)  # the 13th waits for the next pop, and so on: none spills
    assert q.counts()["conBytesInDiskQueue"] == 0
    consumer.join()
    assert len(got) == 30
    q.close()


def test_memory_room_is_what_may_stay_in_memory_before_the_queue_spills(tmp_path):
    q = ReplicationQueue(tmp_path, memory_bytes=8192, to_disk_threshold=50, segment_bytes=4096,
                         free_min_mb=0)
    assert q.memory_room() == 4096
    q.push([bytes(1000)])
    assert q.memory_room() == 4096 - 1008  # the ring counts its 8-byte record headers
    for _ in range(6):  # past the threshold, the next goes to disk
        q.push([bytes(1000)])
    assert q.counts()["conBytesInDiskQueue"] > 0 and q.memory_room() == 0
    while q.pop(100, timeout=0):
        pass
    assert q.memory_room() == 4096
    q.close()
    memory_only = ReplicationQueue(None, memory_bytes=8192)
    memory_only.push([bytes(1000)])
    assert memory_only.memory_room() == 8192 - 1008
    memory_only.close()


def test_queue_alert_fires_once_per_crossing(tmp_path, seen_events):
    q = ReplicationQueue(None, memory_bytes=8192, alert_threshold=50)
    q.push([bytes(1000)] * 3)
    assert not seen_events
    q.push([bytes(1000)] * 2)
    q.push([bytes(10)])
    assert [e.id for e in seen_events] == [4072]
    q.pop(100)
    q.push([b"x"])
    q.push([bytes(1000)] * 5)
    assert [e.id for e in seen_events] == [4072, 4072]


class QueueModel(RuleBasedStateMachine):
    """The combined queue against a deque: push, pop, spill, close, reopen."""

    def __init__(self):
        super().__init__()
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="dtq-")
        self.model = deque()
        self.counter = 0
        self.open()

    def open(self):
        self.q = ReplicationQueue(self.dir, memory_bytes=4096, to_disk_threshold=60,
                                  segment_bytes=4096, free_min_mb=0)

    @rule(sizes=st.lists(st.integers(0, 700), min_size=1, max_size=8),
          kind=st.sampled_from([REPLICATION, MIRROR]))
    def push(self, sizes, kind):
        recs = []
        for s in sizes:
            self.counter += 1
            recs.append((b"%06d" % self.counter * (s // 6 + 1))[:max(s, 6)])
        assert self.q.push(recs, ops=2, kind=kind) == len(recs)
        self.model.extend((r, kind) for r in recs)

    @rule(n=st.integers(1, 20))
    def pop(self, n):
        got = self.q.pop(n, timeout=0, meta=True)
        want = [self.model.popleft() for _ in range(min(n, len(self.model)))] if got or self.model else []
        assert [(r, k) for r, _, k in got] == want[:len(got)]
        # a pop may return fewer (one source per call); put back what it did not take
        for item in reversed(want[len(got):]):
            self.model.appendleft(item)
        assert got or not want

    @rule()
    def reopen(self):
        self.q.close()
        self.open()

    @invariant()
    def counts_match(self):
        c = self.q.counts()
        assert c["Records"] == len(self.model)
        assert c["conOpsInRepQueue"] + c["conOpsInMirQueue"] == 2 * len(self.model)
        assert c["conBytesInRepQueue"] == sum(len(r) for r, k in self.model if k == REPLICATION)

    def teardown(self):
        self.q.close()
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)


TestQueueModel = QueueModel.TestCase
TestQueueModel.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)


# ---- every loss found when a journal is opened is an error, never an empty queue ----

def _filled(path, n=60):
    """A closed journal of several segments holding records 0..n-1."""
    q = disk(path)
    recs = [b"%04d" % i * 100 for i in range(n)]
    q.push(recs)
    q.close()
    return recs, sorted(path.glob("*.seg"))


def _drain(q):
    got = []
    with pytest.raises(QueueCorruptError):
        while True:
            batch = q.pop(7)
            assert batch, "an empty pop where records were lost"
            got.extend(batch)
    return got


@pytest.mark.parametrize("damage", ["newest header", "newest deleted", "middle deleted"])
def test_a_lost_or_damaged_segment_is_an_error_at_every_pop(tmp_path, seen_events, damage):
    recs, segs = _filled(tmp_path)
    assert len(segs) >= 4
    holding = [s for s in segs if s.stat().st_size > 32]  # the last one was opened, empty
    victim = holding[-1] if damage.startswith("newest") else holding[len(holding) // 2]
    if damage == "newest header":
        with open(victim, "r+b") as f:
            f.write(b"garbage!")
    else:
        victim.unlink()
    q = disk(tmp_path)
    assert q.counts()["corrupt"]
    assert 4070 in [e.id for e in seen_events]
    got = _drain(q)
    assert got == recs[:len(got)] and len(got) < len(recs)
    with pytest.raises(QueueCorruptError):  # and again: the loss does not go away
        q.pop()
    q.close()
    q = disk(tmp_path)  # nor when the journal is opened once more
    assert q.counts()["corrupt"]
    with pytest.raises(QueueCorruptError):
        while q.pop(100):
            pass
    q.close()


def test_a_lost_position_file_never_delivers_consumed_records_again(tmp_path):
    recs, _ = _filled(tmp_path)
    q = disk(tmp_path)
    assert q.pop(10) == recs[:10]
    q.commit()
    q.close()
    (tmp_path / "dtq.pos").unlink()
    for _ in range(2):  # reported at every open until the queue is reset
        q = disk(tmp_path)
        assert q.counts()["corrupt"]
        with pytest.raises(QueueCorruptError):
            q.pop()
        q.close()


def test_a_new_journal_reopened_without_any_pop_is_whole(tmp_path):
    recs, _ = _filled(tmp_path)
    q = disk(tmp_path)
    assert not q.counts()["corrupt"]
    got = []
    while batch := q.pop(100):
        got.extend(batch)
    assert got == recs
    q.close()
