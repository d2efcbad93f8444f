"""The replication queue: memory first, spilling to the journal past
MemoryQueueToDiskThreshold, one FIFO across both."""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Sequence

from dtcore.control import settings
from dtcore.control.events import emit, log
from dtcore.errors import DTError, QueueClosedError
from dtcore.queues.journal import DiskQueue
from dtcore.queues.memory import MemoryQueue
from dtcore.queues.records import MB, REPLICATION

# how long a push waits for the consumer to free ring room that the bytes
# queued say is there, before it spills to the journal instead
GEOMETRY_WAIT = 0.5


class ReplicationQueue:
    """The engine's queue: one FIFO over memory and disk.

    Records stay in memory until its use passes ``MemoryQueueToDiskThreshold``
    percent of ``QMemoryBufferMax`` (or the ``OpBufferSize`` op limit); from
    then on they go to the journal until it has drained, so every record on
    disk is newer than every record in memory and pops keep the push order.
    Closing writes what is still in memory to the front of the journal, so a
    reopened queue holds exactly what was queued.  Without a journal
    directory (or with ``QJournalSpaceMax`` 0), a full memory queue blocks
    its producers instead.

    With ``write_through`` (QLogWriteThrough) every record goes to the
    journal, durable when :meth:`push` returns; memory is not used for them.
    With ``hold`` (the live replication stream), records popped from the
    journal stay in it until :meth:`commit` is given the mark that
    :meth:`pop_marked` returned with them, so a crash before the target's
    acknowledgement sends them again; while any are held, new records go to
    the journal too, which keeps one FIFO over both."""

    def __init__(self, journal_dir: str | os.PathLike[str] | None = None, *,
                 memory_bytes: int | None = None,
                 max_ops: int = settings.default("OpBufferSize"),
                 to_disk_threshold: int = settings.default("MemoryQueueToDiskThreshold"),
                 segment_mb: int = settings.default("QJournalFileSize"),
                 space_max_mb: int | None = settings.default("QJournalSpaceMax"),
                 free_min_mb: int = settings.default("QJournalFreeSpaceMin"),
                 write_through: bool = bool(settings.default("QLogWriteThrough")),
                 alert_threshold: int = settings.default("QueueSizeAlertThreshold"),
                 segment_bytes: int | None = None, hold: bool = False,
                 alert_label: str = "") -> None:
        settings.check("MemoryQueueToDiskThreshold", to_disk_threshold)
        settings.check("QueueSizeAlertThreshold", alert_threshold)
        self.memory = MemoryQueue(memory_bytes, max_ops)
        self.disk: DiskQueue | None = None
        if journal_dir is not None and space_max_mb != 0:
            self.disk = DiskQueue(journal_dir, segment_mb, space_max_mb, free_min_mb, write_through,
                                  segment_bytes, hold)
        self._to_disk_always = self.disk is not None and write_through
        self._popped = 0  # journal records popped, ever
        self._committed = 0  # of those, consumed by a committed mark
        self._alert_label = alert_label
        self._spill_at = self.memory.max_bytes * to_disk_threshold // 100
        self._space_max = None if space_max_mb is None else space_max_mb * MB
        self._alert_at = alert_threshold
        self._alerted = False
        self._lock = threading.Lock()
        self._closed = False

    # -- producers --

    def push(self, records: list[Any], ops: int | Sequence[int] = 1, kind: int = REPLICATION,
             timeout: float | None = None) -> int:
        """Queue ``records`` in order; returns how many were queued (fewer
        only when memory stayed full for ``timeout`` with no disk queue)."""
        with self._lock:
            if self._closed:
                raise QueueClosedError("the replication queue is closed")
            if self.disk is None:
                pushed = self.memory.push(records, ops, kind, timeout)
            elif self._to_disk_always or self._popped > self._committed or \
                    self.disk.counts()["records"] or self.memory.counts()["pool_used"] >= self._spill_at:
                pushed = self.disk.push(records, ops, kind)
            else:
                pushed = self.memory.push(records, ops, kind, 0)
                if pushed < len(records) and self._below_spill():
                    # the ring refused a record it holds in bytes: its room lies
                    # behind the filler of a start-over (or the wrap) until the
                    # consumer's next pop, which will not be long
                    pushed += self.memory.push(records[pushed:], self._rest(ops, pushed), kind,
                                               GEOMETRY_WAIT)
                if pushed < len(records):
                    pushed += self.disk.push(records[pushed:], self._rest(ops, pushed), kind)
        self._check_alert()
        return pushed

    @staticmethod
    def _rest(ops: int | Sequence[int], pushed: int) -> int | Sequence[int]:
        return ops if isinstance(ops, int) else list(ops)[pushed:]

    def _below_spill(self) -> bool:
        """Whether memory is below the spill point though a push failed."""
        return self.memory.counts()["pool_used"] < self._spill_at

    def memory_room(self) -> int:
        """Bytes a producer may still hold in memory, beside the ring, before
        this queue would go to disk (QMemoryBufferMax, MemoryQueueToDiskThreshold):
        none once it spills."""
        used = self.memory.counts()["pool_used"]
        if self.disk is None:
            return max(0, self.memory.max_bytes - used)
        if self._to_disk_always or self._popped > self._committed or self.disk.counts()["records"]:
            return 0
        return max(0, self._spill_at - used)

    # -- the consumer --

    def pop(self, max_records: int = 1024, timeout: float | None = None,
            max_bytes: int = MB, meta: bool = False, batch: bool = False) -> Any:
        """The oldest records, in push order; [] if none came within
        ``timeout``.  ``meta`` and ``batch`` as for :meth:`MemoryQueue.pop`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            got = self.memory.pop(max_records, 0, max_bytes, meta, batch)
            if got:
                return got
            if self.disk is not None:
                with self._lock:  # no producer can slip a record into memory now
                    got = self.memory.pop(max_records, 0, max_bytes, meta, batch) or \
                        self.disk.pop(max_records, max_bytes, meta, batch)
                if got:
                    return got
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return []
            # a record pushed while we sleep goes to memory (the disk is empty),
            # so the memory wait sees it; the slice only bounds a lost race
            wait = 0.05 if left is None else min(left, 0.05)
            got = self.memory.pop(max_records, wait if self.disk is not None else left, max_bytes,
                                  meta, batch)
            if got or self.disk is None:
                return got

    def pop_marked(self, max_records: int = 1024, timeout: float | None = None,
                   max_bytes: int = MB) -> tuple[Any, tuple[int, int, int, int] | None]:
        """(a RecordBatch, its mark): the mark is None for records that came
        from memory, else what :meth:`commit` takes once they are done with.
        A batch never mixes the two."""
        got = self.memory.pop(max_records, 0, max_bytes, batch=True)
        if len(got) or self.disk is None:
            return (got if len(got) else self.memory.pop(max_records, timeout, max_bytes, batch=True)), None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                got = self.memory.pop(max_records, 0, max_bytes, batch=True)
                if len(got):
                    return got, None
                got = self.disk.pop(max_records, max_bytes, batch=True)
                if len(got):
                    self._popped += len(got)
                    return got, (*self.disk.mark(), self._popped)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return got, None
            wait = 0.05 if left is None else min(left, 0.05)
            got = self.memory.pop(max_records, wait, max_bytes, batch=True)
            if len(got):
                return got, None

    def commit(self, mark: tuple[int, int, int, int]) -> None:
        """Consume, durably, the journal records popped up to ``mark``."""
        assert self.disk is not None
        with self._lock:
            if mark[3] > self._committed:
                self.disk.commit_mark(mark[:3])
                self._committed = mark[3]

    # -- state --

    def counts(self) -> dict[str, int]:
        """The guide's queue statistics for this connection."""
        m = self.memory.counts()
        d = self.disk.counts() if self.disk is not None else None
        disk_rep_ops = d["rep_ops"] if d else 0
        disk_mir_ops = d["mir_ops"] if d else 0
        disk_rep = d["rep_bytes"] if d else 0
        disk_mir = d["mir_bytes"] if d else 0
        return {
            "conOpsInRepQueue": m["rep_ops"] + disk_rep_ops,
            "conBytesInRepQueue": m["rep_bytes"] + disk_rep,
            "conOpsInMirQueue": m["mir_ops"] + disk_mir_ops,
            "conBytesInMirQueue": m["mir_bytes"] + disk_mir,
            "conBytesInDiskQueue": disk_rep + disk_mir,
            "Bytes In Target Queue": m["rep_bytes"] + m["mir_bytes"],
            "Bytes In Target Disk Queue": disk_rep + disk_mir,
            "IQAllocator Total Bytes": m["pool_used"],
            "MemoryPoolBytesTotal": m["pool_total"],
            "MemoryPoolBytesAvailable": m["pool_total"] - m["pool_used"],
            "RepBytesHighWater": m["rep_bytes_hw"],
            "MirBytesHighWater": m["mir_bytes_hw"],
            "Records": m["records"] + (d["records"] if d else 0),
            "DiskQueueFileBytes": d["disk_bytes"] if d else 0,
        }

    def percent_used(self) -> float:
        """Share of the whole queue in use: memory plus the journal, whose
        size is QJournalSpaceMax or, when unlimited, what the disk can hold."""
        m = self.memory.counts()
        used, cap = m["pool_used"], m["pool_total"]
        if self.disk is not None:
            disk_used = self.disk.counts()["disk_bytes"]
            used += disk_used
            if self._space_max is not None:
                cap += self._space_max
            else:
                st = os.statvfs(self.disk.directory)
                cap += disk_used + st.f_bavail * st.f_frsize
        return 100.0 * used / cap if cap else 0.0

    def _check_alert(self) -> None:
        if not self._alert_at:
            return
        over = self.percent_used() >= self._alert_at
        if over and not self._alerted:
            emit(4072, threshold=self._alert_at,
                 conn=f"{self._alert_label}{self.percent_used():.0f}% used")
        self._alerted = over

    def close(self, front: list[tuple[Any, int, int]] = (),  # type: ignore[assignment]
              discard: bool = False) -> int:
        """Stop the queue.  ``front`` (records with their op counts and kinds,
        popped from memory and not done with) and the records still in memory
        go to the front of the journal, ahead of held ones; returns how many
        had to be dropped (only without a journal, or with ``discard``: a
        queue whose records are sent again from elsewhere)."""
        with self._lock:
            if self._closed:
                return 0
            self._closed = True
            self.memory.close()
            if discard:
                dropped = self.memory.counts()["records"]
                self.memory.release()
                if self.disk is not None:
                    try:
                        self.disk.close()
                    except DTError:  # its folder may be gone already: nothing in it matters
                        pass
                return dropped
            left: list = list(front)
            try:
                while batch := self.memory.pop(65536, 0, 16 * MB, meta=True):
                    left.extend(batch)
            except QueueClosedError:  # drained
                pass
            self.memory.release()
            if self.disk is None:
                if left:
                    log.warning("replication queue closed with %d records and no disk queue: "
                                "they are dropped", len(left))
                return len(left)
            if left:
                self.disk.prepend([r for r, _, _ in left], [o for _, o, _ in left],
                                  [k for _, _, k in left])
            self.disk.close()
            return 0

    def __enter__(self) -> ReplicationQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
