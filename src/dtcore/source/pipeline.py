"""The source's replication pipeline: intake -> merge -> replication queue.

Ops reach :meth:`Pipeline.submit` as a packed batch (the format of
:mod:`dtcore.model.ops`).  Ops outside the replication set's rules are
dropped first; with the common rule set that takes everything, this costs
nothing per op.  The C merge then joins touching and overlapping writes of
a file into writes of at most ``MaxWriteChunkSize`` bytes (newest bytes
winning) and trims writes that a later truncate made moot.  The merged
batch gets a batch number and the time it was generated and goes onto the
connection's :class:`~dtcore.queues.replication.ReplicationQueue`: memory
first, its journal in the replication's folder of ``QJournalDir`` past
``MemoryQueueToDiskThreshold``, or always the journal with
``QLogWriteThrough``.

A queued record is ops, not a wire frame::

    batch number u64 | generated (ns since the epoch) u64 | packed batch

Frame numbers, compression and CRC are applied by the transmitter when it
sends, so a record outlives reconnects and restarts and goes out under the
terms of whichever connection sends it."""
from __future__ import annotations

import os
import struct
import threading
import time
from collections import deque
from typing import Any

from dtcore._buffers import byte_view
from dtcore.control.config import Config
from dtcore.control.stats import Counters
from dtcore.model.ops import (
    Op,
    OpKind,
    merge_batch,
    merge_bound,
    pack_batch,
    scan_batch,
    unpack_batch,
)
from dtcore.model.repset import ReplicationSet
from dtcore.protocol.frames import REP_HEAD as RECORD_HEAD
from dtcore.queues.records import MB, REPLICATION
from dtcore.queues.replication import ReplicationQueue
from dtcore.source.rep_state import ReplicationState

_COUNT = struct.Struct("<I")


class MergeSavings:
    """What merging saved: ops in, ops out, write bytes in and out."""

    def __init__(self) -> None:
        self.ops_in = self.ops_out = self.bytes_in = self.bytes_out = 0

    def as_dict(self) -> dict[str, int]:
        return {"ops_in": self.ops_in, "ops_out": self.ops_out,
                "bytes_saved": self.bytes_in - self.bytes_out,
                "ops_saved": self.ops_in - self.ops_out}


# the largest merge buffer kept between submits
_SCRATCH_MAX = 16 * MB


class Pipeline:
    """Intake to queue for one replication (see the module docstring)."""

    def __init__(self, directory: str, repset: ReplicationSet, config: Config,
                 counters: Counters, server: Counters, label: str = "") -> None:
        cfg = config
        self.directory = directory
        self.repset = repset
        self.write_through = bool(cfg["QLogWriteThrough"])
        self.state = ReplicationState(directory, self.write_through)
        self.max_chunk = cfg["MaxWriteChunkSize"]
        self.counters = counters
        self.server = server
        journal = os.path.join(directory, "journal")
        self.queue = self._open_queue(cfg, journal, label)
        # a damaged journal (event 4070, from the queue) cannot be sent: it is
        # set aside, and the target must be remirrored
        self.lost = self.queue.disk is not None and bool(self.queue.disk.counts()["corrupt"])
        if self.lost:
            self.queue.close()
            os.replace(journal, f"{journal}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
            self.queue = self._open_queue(cfg, journal, label)
        self.savings = MergeSavings()
        self._lock = threading.Lock()  # batch numbers in queue order
        # (batch number, generated ns) of every batch not yet acknowledged,
        # oldest first: the recovery point
        self.unacked: deque[tuple[int, int, int]] = deque()
        self.unacked_ops = 0
        self._restored_upto = 0
        self._unacked_lock = threading.Lock()
        self._check = not repset._all
        self._verdicts: dict[bytes, bool] = {}
        self._scratch: bytearray | None = None

    def _open_queue(self, cfg: Config, journal: str, label: str) -> ReplicationQueue:
        return ReplicationQueue(
            journal, memory_bytes=cfg["QMemoryBufferMax"] * MB, max_ops=cfg["OpBufferSize"],
            to_disk_threshold=cfg["MemoryQueueToDiskThreshold"], segment_mb=cfg["QJournalFileSize"],
            space_max_mb=cfg["QJournalSpaceMax"], free_min_mb=cfg["QJournalFreeSpaceMin"],
            write_through=self.write_through, alert_threshold=cfg["QueueSizeAlertThreshold"],
            hold=True, alert_label=label)

    # -- rules ---------------------------------------------------------------
    def included(self, path: bytes) -> bool:
        """Whether the rules protect ``path`` (cached per path)."""
        if not self._check:
            return True
        verdict = self._verdicts.get(path)
        if verdict is None:
            if len(self._verdicts) > 65536:
                self._verdicts.clear()
            verdict = self._verdicts[path] = self.repset.includes(path)
        return verdict

    def filter(self, ops: list[Op]) -> list[Op]:
        """The ops the rules keep; a rename out of the set becomes a delete
        (a rename into it is the caller's to send as a new file)."""
        kept = []
        for op in ops:
            if self.included(op[3]):
                if op[0] == OpKind.RENAME and not self.included(bytes(op[5])):
                    op = Op(OpKind.DELETE, op[1], op[2], op[3])
                kept.append(op)
        return kept

    # -- intake ----------------------------------------------------------------
    def submit(self, batch: Any) -> int:
        """Merge a packed batch and queue it; returns its batch number (0 when
        the rules left nothing).  With QLogWriteThrough the batch is durable
        in the journal when this returns; without, it is queued in memory
        (or the journal's write buffer) and a crash of the process may lose
        it."""
        view = byte_view(batch, "batch")
        info = scan_batch(view)
        if self._check:
            ops = self.filter(unpack_batch(view))
            if not ops:
                return 0
            view = memoryview(pack_batch(ops))
            info = scan_batch(view)
        if not info.count:
            return 0
        # the queue copies the record in, so one warm buffer serves every
        # submit (a concurrent one makes its own) instead of a fresh
        # allocation whose pages fault in on each call
        need = RECORD_HEAD.size + merge_bound(view, self.max_chunk)
        scratch, self._scratch = self._scratch, None
        if scratch is None or len(scratch) < need:
            scratch = bytearray(need)
        out = memoryview(scratch)
        try:
            merged = merge_batch(view, self.max_chunk, into=out[RECORD_HEAD.size:])
            used = len(merged)
            count = _COUNT.unpack_from(merged, 8)[0]
            after = scan_batch(merged).data_bytes
            merged.release()
            record = out[:RECORD_HEAD.size + used]
            now = time.time_ns()
            with self._lock:
                seq = self.state.next_seq()
                RECORD_HEAD.pack_into(record, 0, seq, now)
                with self._unacked_lock:
                    self.unacked.append((seq, now, count))
                    self.unacked_ops += count
                try:
                    self.queue.push([record], count, REPLICATION)
                except BaseException:
                    with self._unacked_lock:
                        self.unacked.pop()
                        self.unacked_ops -= count
                    raise
            record.release()
        finally:
            out.release()
            if len(scratch) <= _SCRATCH_MAX:
                self._scratch = scratch
        s = self.savings
        s.ops_in += info.count
        s.ops_out += count
        s.bytes_in += info.data_bytes
        s.bytes_out += after
        self.server.add("RepOpsGenerated", info.count)
        self.server.add("RepBytesGenerated", info.data_bytes)
        return seq

    def restored(self, seq: int, generated: int, ops: int) -> None:
        """A record left by an earlier run was taken from the journal: it
        counts towards the recovery point until acknowledged.  Such records
        come in order and before anything this run submitted."""
        with self._unacked_lock:
            if self.unacked and seq >= self.unacked[0][0]:
                return  # submitted by this run, or noted already
            if self._restored_upto >= seq:
                return
            self._restored_upto = seq
            # before this run's first submit, after earlier restored ones
            i = 0
            while i < len(self.unacked) and self.unacked[i][0] < seq:
                i += 1
            self.unacked.insert(i, (seq, generated, ops))
            self.unacked_ops += ops

    def acknowledged(self, upto: int) -> None:
        """Batches up to number ``upto`` are applied on the target."""
        with self._unacked_lock:
            while self.unacked and self.unacked[0][0] <= upto:
                self.unacked_ops -= self.unacked.popleft()[2]

    def recovery_point(self) -> tuple[float, float]:
        """(ConRPT: the time up to which the target has every op, in seconds
        since the epoch; ConRPL: how many seconds the target is behind)."""
        now = time.time()
        with self._unacked_lock:
            if not self.unacked:
                return now, 0.0
            oldest = self.unacked[0][1] / 1e9
        return oldest, max(0.0, now - oldest)

    def close(self, front: list[tuple[Any, int, int]] = ()) -> None:  # type: ignore[assignment]
        """Close the queue (``front``: records popped from memory and not yet
        acknowledged, which go to the journal ahead of the rest) and record
        a clean end."""
        self.queue.close(front)
        self.state.close()


def record_head(record: Any) -> tuple[int, int]:
    """(batch number, generated ns) of a queued record."""
    return RECORD_HEAD.unpack_from(record, 0)


def default_directory(config: Config, repset: ReplicationSet, host: str, port: int,
                      target_path: str) -> str:
    """The replication's folder in QJournalDir: one per set and target path."""
    name = f"{repset.name}@{host}_{port}_{target_path or '-'}"
    safe = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in name)
    return os.path.join(config["QJournalDir"], safe)

