"""The source's transmit stage: producers (mirror workers now, the
replication intake next) hand over op lists; each becomes one OPS frame,
compressed and checksummed in the producer's own thread, numbered and put on
the connection's replication queue in order.  A transmit thread sends queued
frames several at a time.  At most ``SourcePendingAcks`` ops wait for the
target's acknowledgement (a producer waits beyond that); each cumulative ACK
completes the frames up to it, in order, running their callbacks.  A target
that asks for a pause (its mirror memory passed ``TGMirrorCapacityHigh``)
stops mirror frames until it asks to resume."""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from typing import Any, Callable

from dtcore.control.events import emit
from dtcore.control.stats import Counters
from dtcore.errors import DTError, QueueClosedError
from dtcore.model.ops import Op, pack_batch
from dtcore.protocol.frames import FLAG_MIRROR, OPS, PeerClosed, json_object
from dtcore.protocol.link import Link
from dtcore.protocol.messages import Ack, Flow, Notice, OpFailure
from dtcore.queues.records import MB, MIRROR, REPLICATION
from dtcore.queues.replication import ReplicationQueue

Callback = Callable[[], None]


class Transmitter:
    """Frames out and acknowledgements in for one connection; it outlives a
    reconnect (frame numbers go on), dropping what was in flight."""

    def __init__(self, window: int, counters: Counters, name: str) -> None:
        self.window = window  # SourcePendingAcks
        self.counters = counters
        self.name = name
        self.link: Link | None = None
        self.queue: ReplicationQueue | None = None
        self._seq = 0
        self._seq_lock = threading.Lock()
        self._pending: OrderedDict[int, tuple[int, Callback | None]] = OrderedDict()
        self._unacked_ops = 0
        self._cv = threading.Condition()
        self._resume = threading.Event()
        self._resume.set()
        self._thread: threading.Thread | None = None
        self.dropped: list[OpFailure] = []  # ops the target gave up, not yet taken
        self.notice: Notice | None = None  # the target's latest word on an op it retries
        self.on_notice_hook: Callable[[Notice], None] | None = None

    def start(self, link: Link, queue: ReplicationQueue) -> None:
        """Transmit over a new link from a new queue."""
        self.link, self.queue = link, queue
        self._thread = threading.Thread(target=self._transmit, name=self.name, daemon=True)
        self._thread.start()

    def check(self) -> Link:
        """The link, or the error that closed it."""
        if self.link is None:
            raise PeerClosed("not connected")
        if self.link.closed:
            err = self.link.error
            raise err if isinstance(err, DTError) else PeerClosed(f"the connection closed ({err})")
        return self.link

    def send_ops(self, ops: list[Op], *, mirror: bool = True, path: bytes | None = None,
                 on_applied: Callback | None = None) -> int:
        """Queue ops as one frame; ``on_applied`` runs when the target has
        acknowledged them.  Returns the frame's size on the wire."""
        link = self.check()
        body = pack_batch(ops)
        flags, parts = link.ch.encode(body, path)
        if mirror:
            flags |= FLAG_MIRROR
        n = len(ops)
        with self._cv:
            while self._unacked_ops and self._unacked_ops + n > self.window and not link.closed:
                self._cv.wait(0.5)
        assert self.queue is not None
        with self._seq_lock:
            self.check()
            self._seq += 1
            seq = self._seq
            record = b"".join([link.ch.header(OPS, flags, parts, seq), *parts])
            with self._cv:
                self._pending[seq] = (n, on_applied)
                self._unacked_ops += n
            try:
                self.queue.push([record], n, MIRROR if mirror else REPLICATION)
            except QueueClosedError:
                raise PeerClosed("the connection closed") from None
        self.counters.add("conOpsTx", n)
        self.counters.add("conBytesTx", len(body))
        self.counters.add("conBytesCompressedTx", len(record))
        return len(record)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until the target has acknowledged every op sent so far."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while self._pending:
                self.check()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"{len(self._pending)} frames still unacknowledged")
                self._cv.wait(0.2 if left is None else min(left, 0.2))
        self.check()

    def _transmit(self) -> None:
        assert self.queue is not None and self.link is not None
        while True:
            try:
                records = self.queue.pop(64, timeout=None, max_bytes=8 * MB, batch=True)
            except QueueClosedError:
                return
            if MIRROR in records.kinds:
                self._resume.wait()
            try:
                self.link.send_parts(list(records))
            except DTError as e:
                self.link.fail(e)
                return

    # -- the link's callbacks --------------------------------------------------
    def on_ack(self, seq: int, body: Any = b"") -> None:
        done: list[Callback] = []
        if len(body):
            dropped = Ack.parse(json_object(body, "ACK")).dropped
            for d in dropped:
                emit(6002, detail=f"the target gave up an op on {os.fsdecode(d.path)} "
                                  f"({d.reason}, code {d.code}); the target needs a remirror")
            with self._cv:
                self.dropped.extend(dropped)
        self.notice = None
        with self._cv:
            while self._pending:
                first = next(iter(self._pending))
                if first > seq:
                    break
                n, callback = self._pending.pop(first)
                self._unacked_ops -= n
                if callback is not None:
                    done.append(callback)
            self._cv.notify_all()
        for callback in done:
            callback()

    def on_flow(self, fields: dict[str, Any]) -> None:
        if Flow.parse(fields).pause:
            self._resume.clear()
        else:
            self._resume.set()

    def on_notice(self, fields: dict[str, Any]) -> None:
        notice = Notice.parse(fields)
        self.notice = notice
        f = notice.failure
        emit(6001, detail=f"the target is retrying an op on {os.fsdecode(f.path)} ({f.reason}; "
                          f"attempt {notice.retries}); later ops wait for it")
        hook = self.on_notice_hook
        if hook is not None:
            hook(notice)

    def take_dropped(self) -> list[OpFailure]:
        """The ops the target gave up since the last call."""
        with self._cv:
            dropped, self.dropped = self.dropped, []
        return dropped

    def on_close(self) -> None:
        self._resume.set()
        if self.queue is not None:
            self.queue.close()
        with self._cv:
            self._cv.notify_all()

    def join(self, timeout: float = 5) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def drop_in_flight(self) -> None:
        """Forget unacknowledged frames (before a reconnect: the mirror
        resends from its acknowledged files)."""
        self.join()
        with self._cv:
            self._pending.clear()
            self._unacked_ops = 0
        self._resume.set()
