"""The memory queue and the disk queue next to the queues a Python engine
would otherwise use, measured in the same run."""
import collections
import os
import queue
import shutil
import tempfile
import threading
import time

from dtcore._native import _queue
from dtcore.queues.journal import DiskQueue
from dtcore.queues.memory import MemoryQueue

from .common import MiB

BATCH = 1024


def _pair(produce, consume):
    """Seconds for one producer thread and one consumer (this thread)."""
    t = threading.Thread(target=produce)
    start = time.perf_counter()
    t.start()
    consume()
    t.join()
    return time.perf_counter() - start


_shared: dict[tuple[int, int], MemoryQueue] = {}


def memq_pair(n: int, size: int, capacity: int = 256 * MiB) -> float:
    """Seconds to move n records through MemoryQueue between two threads, in
    batches (popped as a RecordBatch, the form the sender writes to the wire).
    The queue (QMemoryBufferMax, prefaulted) is made once, as an engine would."""
    q = _shared.get((size, capacity)) or _shared.setdefault((size, capacity), MemoryQueue(capacity))
    batch = [os.urandom(size)] * BATCH

    def produce():
        for _ in range(n // BATCH):
            q.push(batch)

    def consume():
        got = 0
        while got < n // BATCH * BATCH:
            got += len(q.pop(BATCH, max_bytes=min(BATCH * (size + 8), 4 * MiB), batch=True))
    return _pair(produce, consume)


def stdlib_pair(kind: str, n: int, size: int) -> float:
    """The same through queue.Queue(maxsize), queue.SimpleQueue or a deque."""
    rec = os.urandom(size)
    if kind == "deque":
        d = collections.deque()

        def produce():
            for _ in range(n):
                d.append(rec)

        def consume():
            got = 0
            while got < n:
                try:
                    d.popleft()
                    got += 1
                except IndexError:
                    time.sleep(0)
        return _pair(produce, consume)
    q = queue.Queue(maxsize=10000) if kind == "Queue" else queue.SimpleQueue()

    def produce():
        put = q.put
        for _ in range(n):
            put(rec)

    def consume():
        get = q.get
        for _ in range(n):
            get()
    return _pair(produce, consume)


def c_pair(n: int, size: int, capacity: int = 256 * MiB) -> float:
    return _queue.bench_pair(capacity, size, BATCH, n)


class _Dir:
    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="dtq-bench-", dir=os.environ.get("DTCORE_BENCH_DIR"))
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


def disk_buffered(total: int, size: int = 64 * 1024) -> float:
    """Seconds to push `total` bytes of `size`-byte records, buffered, and close."""
    rec = os.urandom(size)
    with _Dir() as d:
        q = DiskQueue(d, free_min_mb=0)
        os.sync()  # the last run's dirty pages would be written back during this one
        start = time.perf_counter()
        for _ in range(total // size // 16):
            q.push([rec] * 16)
        q.close()
        return time.perf_counter() - start


def plain_write(total: int, size: int = 64 * 1024) -> float:
    """Seconds to write the same bytes to one file, a record per write.  Not
    synced: the buffered queue promises no durability either (its close syncs
    only the last segment)."""
    rec = os.urandom(size)
    with _Dir() as d:
        os.sync()
        start = time.perf_counter()
        with open(os.path.join(d, "plain"), "wb", buffering=0) as f:
            for _ in range(total // size):
                f.write(rec)
        return time.perf_counter() - start


def _producers(put, records: int, producers: int) -> float:
    """Seconds for `producers` threads to call put() records/producers times each."""
    each = records // producers
    threads = [threading.Thread(target=lambda: [put() for _ in range(each)])
               for _ in range(producers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def write_through(records: int, producers: int = 4, size: int = 4096) -> float:
    """Seconds for `producers` threads to push `records` write-through records."""
    rec = os.urandom(size)
    with _Dir() as d:
        q = DiskQueue(d, free_min_mb=0, write_through=True)
        elapsed = _producers(lambda: q.push([rec]), records, producers)
        q.close()
        return elapsed


def fdatasync_each(records: int, size: int = 4096) -> float:
    """Seconds to append and fdatasync one record at a time."""
    rec = os.urandom(size)
    with _Dir() as d:
        fd = os.open(os.path.join(d, "plain"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        start = time.perf_counter()
        for _ in range(records):
            os.write(fd, rec)
            os.fdatasync(fd)
        elapsed = time.perf_counter() - start
        os.close(fd)
        return elapsed


def group_bound(rounds: int, group: int = 4, size: int = 4096) -> float:
    """Seconds for rounds*group records when every round costs only what a
    group commit cannot avoid: one overwrite of the group's framed bytes
    (24-byte headers) in a preallocated file and one fdatasync.  Producers
    that each wait for their own record cannot beat this; the gap between
    two rounds, while they come back, is what a real group commit adds."""
    block = os.urandom(group * (size + 24))
    with _Dir() as d:
        fd = os.open(os.path.join(d, "bound"), os.O_RDWR | os.O_CREAT)
        os.write(fd, bytes(rounds * len(block)))
        os.fsync(fd)
        start = time.perf_counter()
        for r in range(rounds):
            os.pwrite(fd, block, r * len(block))
            os.fdatasync(fd)
        elapsed = time.perf_counter() - start
        os.close(fd)
        return elapsed


def persist_queue(records: int, producers: int = 4, size: int = 4096) -> float:
    """persist-queue's SQLite queue, committing every put (SQLite syncs each
    commit), with the same producers."""
    import persistqueue
    rec = os.urandom(size)
    with _Dir() as d:
        q = persistqueue.SQLiteQueue(d, auto_commit=True, multithreading=True)
        return _producers(lambda: q.put(rec), records, producers)


class MemoryQueuePair:
    """Records/s between a producer and a consumer thread."""
    params = [64, 65536]
    param_names = ["record_bytes"]

    def n(self, size):
        return 200 * BATCH if size == 64 else 8 * BATCH

    def time_memory_queue(self, size):
        memq_pair(self.n(size), size)

    def time_queue_Queue(self, size):
        stdlib_pair("Queue", self.n(size) // 10, size)

    def time_simple_queue(self, size):
        stdlib_pair("SimpleQueue", self.n(size), size)

    def time_c_pair(self, size):
        c_pair(self.n(size) * 10, size)


class DiskQueueWrites:
    timeout = 300

    def time_buffered_64k(self):
        disk_buffered(256 * MiB)

    def time_plain_write_64k(self):
        plain_write(256 * MiB)

    def time_write_through_4_producers(self):
        write_through(2000)

    def time_fdatasync_each(self):
        fdatasync_each(500)

    def time_group_bound_4(self):
        group_bound(500)
