"""The sending side of a live replication on one connection.

The transmitter takes records from the pipeline's queue through
:meth:`ReplicationStream.next`, frames and sends them; the stream keeps
every record sent and not yet acknowledged (the ack window).  A cumulative
acknowledgement completes records in order: the pipeline learns which batch
numbers are applied, and the journal's committed position moves past them
(at most every ``COMMIT_EVERY`` seconds, since each commit syncs; a crash in
between only resends batches the target drops as already applied).  After a
reconnect, :meth:`resume` asks the target which batch it applied last, drops
what it has, and everything else is sent again, in order, before anything
new."""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from dtcore.control.stats import Counters
from dtcore.protocol.link import Link
from dtcore.protocol.messages import ReplicationStart, ReplicationStartReply
from dtcore.queues.records import REPLICATION
from dtcore.source.pipeline import Pipeline, record_head

COMMIT_EVERY = 0.05


@dataclass
class Sent:
    """A queued record, and once sent, the frame that carried it."""

    seq: int  # batch number
    ops: int
    record: Any  # a read-only view lent by the queue, or bytes
    mark: tuple[int, int, int, int] | None  # the journal's, None for a record from memory
    frame: int | None = None  # None until sent
    held: bool = False  # put back unsent: taking it again is no resend


class ReplicationStream:
    """Records between the pipeline's queue and the target's acknowledgement."""

    def __init__(self, pipeline: Pipeline, counters: Counters) -> None:
        self.pipeline = pipeline
        # ops replayed from file-system events name what may be gone by the
        # time they land (its removal follows): a missing path is no failure
        self.tolerant = False
        self.counters = counters
        self.inflight: deque[Sent] = deque()  # sent, not yet acknowledged
        self.resend: deque[Sent] = deque()  # to send again, before anything new
        self.applied = 0  # the last batch number the target applied
        self.target_state = ""
        self._lock = threading.Lock()
        self._mark: tuple[int, int, int, int] | None = None  # acknowledged, not yet committed
        self._committed_at = 0.0
        self._commit_lock = threading.Lock()

    def resume(self, link: Link) -> None:
        """Tell the target this replication (re)starts; keep for sending only
        what it has not applied."""
        reply, _ = link.call(ReplicationStart.METHOD,
                             ReplicationStart(self.pipeline.state.source).fields(), timeout=60)
        start = ReplicationStartReply.parse(reply)
        self.pipeline.state.restart_from(start.applied)
        self.target_state = start.state
        with self._lock:
            self.resend.extendleft(reversed(self.inflight))
            self.inflight.clear()
            while self.resend and self.resend[0].seq <= start.applied:
                self._done(self.resend.popleft())
            self.applied = max(self.applied, start.applied)
        self.pipeline.acknowledged(start.applied)
        self._commit(force=True)

    def next(self) -> Sent | None:
        """The next record to send (a resend first), or None.  It counts as
        in flight from now on, so that nothing is ever in neither place."""
        with self._lock:
            if self.resend:
                item = self.resend.popleft()
                item.frame = None
                self.inflight.append(item)
                if not item.held:
                    self.counters.add("conResentOpCount", item.ops)
                item.held = False
                return item
            # max_bytes 1: the record lands in a buffer of its own size, which
            # it keeps (no second copy) until acknowledged
            batch, mark = self.pipeline.queue.pop_marked(1, timeout=0, max_bytes=1)
            if not len(batch):
                return None
            record = batch[0]
            seq, generated = record_head(record)
            item = Sent(seq, int(batch.ops[0]), record, mark)
            if mark is not None:  # from the journal: perhaps left by an earlier run
                self.pipeline.restored(seq, generated, item.ops)
            self.inflight.append(item)
            return item

    def put_back(self, item: Sent) -> None:
        """``item``, just taken, waits: it is the next to go."""
        with self._lock:
            self.inflight.remove(item)
            self.resend.appendleft(item)
            item.held = True

    def sent(self, item: Sent, frame: int) -> None:
        item.frame = frame

    def acked(self, frame: int) -> int:
        """The target applied every frame up to ``frame``; returns how many
        ops that completed (conOpsRx and conBytesRx count them)."""
        last = ops = size = 0
        with self._lock:
            while self.inflight and self.inflight[0].frame is not None and \
                    self.inflight[0].frame <= frame:
                item = self.inflight.popleft()
                self._done(item)
                last = item.seq
                ops += item.ops
                size += len(item.record)
        if ops:
            self.counters.add("conOpsRx", ops)
            self.counters.add("conBytesRx", size)
        if last:
            self.applied = max(self.applied, last)
            self.pipeline.acknowledged(last)
            self._commit()
        return ops

    def _done(self, item: Sent) -> None:
        if item.mark is not None:
            self._mark = item.mark

    def tick(self) -> None:
        """Commit an acknowledged mark that waited (no ack came since to do it)."""
        if self._mark is not None:
            self._commit()

    def _commit(self, force: bool = False) -> None:
        with self._commit_lock:
            mark = self._mark
            now = time.monotonic()
            if mark is None or (not force and now - self._committed_at < COMMIT_EVERY):
                return
            self._mark = None
            self._committed_at = now
            self.pipeline.queue.commit(mark)

    def counts(self) -> dict[str, int]:
        """The replication's connection statistics: its queue, its ack
        window and the recovery point (ConRPT, ConRPL)."""
        c = self.pipeline.queue.counts()
        rpt, rpl = self.pipeline.recovery_point()
        return {"conOpsInRepQueue": c["conOpsInRepQueue"],
                "conBytesInRepQueue": c["conBytesInRepQueue"],
                "conBytesInDiskQueue": c["conBytesInDiskQueue"],
                "conOpsInAckQueue": self.unacked_ops(),
                "ConRPT": int(rpt), "ConRPL": int(rpl)}

    def unacked_ops(self) -> int:
        with self._lock:
            return sum(i.ops for i in self.inflight)

    def pending(self) -> bool:
        """Whether anything is queued, being sent, or waiting for its ack."""
        with self._lock:
            if self.inflight or self.resend:
                return True
        return self.pipeline.queue.counts()["Records"] > 0

    def close(self) -> None:
        """Commit what was acknowledged; records from memory that were not
        go back to the front of the journal (those from the journal are
        still in it), so a later run sends them again."""
        self._commit(force=True)
        with self._lock:
            left = list(self.inflight) + list(self.resend)
            self.inflight.clear()
            self.resend.clear()
        front: list[tuple[Any, int, int]] = [(i.record, i.ops, REPLICATION)
                                             for i in left if i.mark is None]
        self.pipeline.close(front)
