"""Live replication: the intake (pipeline submit: rules, C merge, queue push)
against a raw queue push of the same records, and end to end on loopback
(intake call to target apply) against a raw socket copy of the same bytes."""
from __future__ import annotations

import os
import random
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

from dtcore.control.config import Config
from dtcore.control.stats import Statistics
from dtcore.engine import Engine
from dtcore.model.ops import Op, OpKind, pack_batch
from dtcore.model.repset import ReplicationSet
from dtcore.queues.records import REPLICATION
from dtcore.queues.replication import ReplicationQueue
from dtcore.source.pipeline import Pipeline

from .common import MiB, paired, random_bytes

SECRET = "benchmark-secret-0123456789"
SMALL_OPS = 8192  # 64 B writes per submitted batch


def small_batch(seed: int = 1, files: int = 300) -> bytearray:
    """64 B random writes to 300 files, as a tool reporting them would pack them."""
    rng = random.Random(seed)
    ops = []
    for i in range(SMALL_OPS):
        f = rng.randrange(files)
        path = b"db/table%03d.dat" % f
        ops.append(Op(OpKind.WRITE, f, i, path, rng.randrange(16384), rng.randbytes(64)))
    return pack_batch(ops)


def large_batch(mib: int = 4) -> bytearray:
    """64 KiB sequential writes to one file."""
    data = random_bytes(mib * MiB)
    return pack_batch([Op(OpKind.WRITE, 1, i, b"big.bin", i * 65536, data[i * 65536:(i + 1) * 65536])
                       for i in range(mib * 16)])


class Intake:
    """Pipeline.submit (merge + queue push) vs a raw push of the same record."""

    def __init__(self, batch: bytearray, rounds: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="dtbench-rep-")
        src = Path(self.dir) / "src"
        src.mkdir()
        stats = Statistics()
        self.pipeline = Pipeline(os.path.join(self.dir, "p"), ReplicationSet(src), Config(None),
                                 stats.connection(1, "bench"), stats.server)
        self.raw = ReplicationQueue(alert_threshold=0)
        self.batch = batch
        self.rounds = rounds

    def _drain(self, queue: ReplicationQueue) -> None:
        while len(queue.pop(1024, timeout=0, max_bytes=256 * MiB, batch=True)):
            pass

    def submit(self) -> None:
        for _ in range(self.rounds):
            self.pipeline.submit(self.batch)
        self._drain(self.pipeline.queue)
        self.pipeline.acknowledged(1 << 62)

    def push(self) -> None:
        for _ in range(self.rounds):
            self.raw.push([self.batch], SMALL_OPS, REPLICATION)
        self._drain(self.raw)

    def close(self) -> None:
        self.pipeline.close()
        self.raw.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Loopback:
    """A target and a live replication on 127.0.0.1."""

    def __init__(self, **settings) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dtbench-rep-"))
        (self.dir / "src").mkdir()
        self.engine = Engine(secret=SECRET, **settings)
        self.target = self.engine.start_target(self.dir / "dst", port=0)
        self.repset = self.engine.replication_set(self.dir / "src")
        self.conn = self.engine.connect(self.repset, port=self.target.port, target_path="data")
        self.rep = self.engine.replicate(self.conn, self.repset, directory=str(self.dir / "q"))

    def close(self) -> None:
        self.engine.close(0)
        shutil.rmtree(self.dir, ignore_errors=True)


def end_to_end(loop: Loopback, batch: bytearray, rounds: int) -> float:
    """Seconds from the first submit until the target applied every batch."""
    t = time.perf_counter()
    for _ in range(rounds):
        loop.rep.submit(batch)
    assert loop.rep.drain(120)
    return time.perf_counter() - t


def socket_copy(nbytes: int, chunk: bytes) -> float:
    """Seconds to move ``nbytes`` over a loopback TCP connection (the bytes
    are received into a buffer, as a target's reader would)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def receive() -> None:
        conn, _ = server.accept()
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        left = nbytes
        while left > 0:
            n = conn.recv_into(view)
            if not n:
                break
            left -= n
        conn.sendall(b"k")
        conn.close()

    t_rx = threading.Thread(target=receive)
    t_rx.start()
    client = socket.create_connection(("127.0.0.1", port))
    t = time.perf_counter()
    sent = 0
    while sent < nbytes:
        client.sendall(chunk)
        sent += len(chunk)
    client.recv(1)
    elapsed = time.perf_counter() - t
    client.close()
    t_rx.join()
    server.close()
    return elapsed


class Lag:
    """When each reported op was acknowledged, i.e. applied on the target."""

    def __init__(self, loop: Loopback) -> None:
        self.calls: list[float] = []  # time of each op's call
        self.batches: list[tuple[int, int]] = []  # (batch number, ops up to it)
        self.acked: dict[int, float] = {}
        pipeline = loop.rep.pipeline
        submit, acknowledged = pipeline.submit, pipeline.acknowledged
        from dtcore.model.ops import scan_batch
        total = [0]

        def counted_submit(batch):
            seq = submit(batch)
            total[0] += scan_batch(batch).count
            self.batches.append((seq, total[0]))
            return seq

        def timed_ack(upto):
            self.acked[upto] = time.perf_counter()
            acknowledged(upto)

        pipeline.submit = counted_submit
        pipeline.acknowledged = timed_ack

    def lags(self) -> list[float]:
        acks = sorted(self.acked.items())
        out = []
        b = 0
        a = 0
        for i, t in enumerate(self.calls):
            while self.batches[b][1] <= i:
                b += 1
            seq = self.batches[b][0]
            while acks[a][0] < seq:
                a += 1
            out.append(acks[a][1] - t)
        return out


def random_writes_lag(rate: int = 2000, seconds: float = 5.0, size: int = 8192) -> dict:
    """Lag of random 8 KiB writes into a 1 GiB file at ``rate`` writes/s."""
    loop = Loopback()
    try:
        path = loop.dir / "src" / "volume.img"
        with open(path, "wb") as f:
            f.truncate(1 << 30)
        loop.rep.create("volume.img")
        loop.rep.truncate("volume.img", 1 << 30)
        assert loop.rep.drain(60)
        lag = Lag(loop)
        rng = random.Random(9)
        block = random_bytes(size)
        n = int(rate * seconds)
        start = time.perf_counter()
        for i in range(n):
            due = start + i / rate
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            lag.calls.append(time.perf_counter())
            loop.rep.write("volume.img", rng.randrange((1 << 30) // size) * size, block)
        assert loop.rep.drain(60)
        achieved = n / (time.perf_counter() - start)
        return _percentiles(lag.lags()) | {"achieved_per_s": achieved}
    finally:
        loop.close()


def small_files_lag(files: int = 20_000) -> dict:
    """Lag of creating small files (create, 1 KiB write, times) as fast as
    the API takes them."""
    loop = Loopback()
    try:
        lag = Lag(loop)
        data = random_bytes(1024)
        loop.rep.mkdir("many")
        start = time.perf_counter()
        for i in range(files):
            name = f"many/f{i:06d}"
            lag.calls.append(time.perf_counter())
            loop.rep.create(name)
            lag.calls.append(time.perf_counter())
            loop.rep.write(name, 0, data)
            lag.calls.append(time.perf_counter())
            loop.rep.setattr(name, atime_ns=0, mtime_ns=1_700_000_000_000_000_000)
        assert loop.rep.drain(120)
        elapsed = time.perf_counter() - start
        return _percentiles(lag.lags()[1:]) | {"files_per_s": files / elapsed}
    finally:
        loop.close()


def _percentiles(values: list[float]) -> dict:
    q = statistics.quantiles(values, n=100)
    return {"p50_ms": q[49] * 1e3, "p99_ms": q[98] * 1e3, "max_ms": max(values) * 1e3}


# -- asv -------------------------------------------------------------------------
class IntakeSmallWrites:
    """64 B random writes, 8192 per batch: submit vs raw push."""

    def setup(self):
        self.intake = Intake(small_batch(), 20)

    def teardown(self):
        self.intake.close()

    def time_submit(self):
        self.intake.submit()

    def time_raw_push(self):
        self.intake.push()

    def track_million_ops_per_s(self):
        m = paired(self.intake.submit, self.intake.push, repeats=5)
        return 20 * SMALL_OPS / m["kernel_s"] / 1e6

    track_million_ops_per_s.unit = "Mops/s"


class IntakeLargeWrites:
    """64 KiB sequential writes: submit vs raw push (ratio of throughput)."""

    def setup(self):
        self.intake = Intake(large_batch(), 8)

    def teardown(self):
        self.intake.close()

    def track_ratio_vs_raw_push(self):
        return paired(self.intake.submit, self.intake.push, repeats=7)["ratio"]

    track_ratio_vs_raw_push.unit = "x raw push"


class EndToEnd:
    """64 KiB writes, intake call to target apply, vs a raw socket copy."""

    timeout = 300

    def setup(self):
        self.loop = Loopback()
        self.batch = large_batch()

    def teardown(self):
        self.loop.close()

    def track_ratio_vs_socket(self):
        nbytes = 16 * 4 * MiB
        chunk = random_bytes(MiB)
        ratios = []
        for _ in range(3):
            ours = end_to_end(self.loop, self.batch, 16)
            ratios.append(socket_copy(nbytes, chunk) / ours)
        return statistics.median(ratios)

    track_ratio_vs_socket.unit = "x socket copy"
