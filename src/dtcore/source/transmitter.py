"""The source's transmit stage.  Two streams share the connection:

- mirror ops: producers (the mirror's workers) hand over op lists; each
  becomes one OPS frame body, compressed in the producer's own thread, and
  waits in the connection's mirror queue;
- the live replication stream (:mod:`dtcore.source.rep_stream`): records
  from the replication pipeline's queue, framed when sent.

One transmit thread sends up to ``HPQueueRatio`` replication frames per
mirror frame.  Frames are numbered when they leave, so the target's
cumulative ACK of a frame number completes exactly the frames sent before
it, whichever stream they came from.  At most ``SourcePendingAcks`` ops
wait for acknowledgement (a mirror producer waits beyond that; replication
records stay queued).  A target that asks for a pause (its mirror memory
passed ``TGMirrorCapacityHigh``) stops mirror frames until it asks to
resume; replication goes on."""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, Callable

from dtcore.control.events import emit
from dtcore.control.stats import Counters
from dtcore.errors import DTError, NetworkFailedError, QueueClosedError
from dtcore.model.ops import Op, OpKind, pack_batch, unpack_batch
from dtcore.protocol.frames import (
    FLAG_MIRROR,
    FLAG_REP,
    FLAG_TOLERANT,
    OPS,
    REP_HEAD,
    PeerClosed,
    json_object,
)
from dtcore.protocol.link import Link
from dtcore.protocol.messages import Ack, Flow, Notice, OpFailure
from dtcore.queues.records import MB, MIRROR, REPLICATION
from dtcore.queues.replication import ReplicationQueue

if TYPE_CHECKING:
    from dtcore.source.rep_stream import ReplicationStream

Callback = Callable[[], None]


def _chain(first: Callback | None, then: Callback) -> Callback:
    if first is None:
        return then

    def both() -> None:
        first()
        then()
    return both


MAX_MISSED = 4096  # missed names kept between two looks; past it, only "more"


class Transmitter:
    """Frames out and acknowledgements in for one connection; it outlives a
    reconnect (frame numbers go on), dropping what was in flight."""

    def __init__(self, window: int, counters: Counters, name: str, ratio: int = 5) -> None:
        self.window = window  # SourcePendingAcks
        self.ratio = ratio  # HPQueueRatio
        self.counters = counters
        self.name = name
        self.rep: ReplicationStream | None = None
        self.mirroring = 0  # mirrors running on this connection
        self._work = threading.Event()  # something to send, or room in the window
        self._rep_lock = threading.Lock()
        self._behind_mirror = False
        # (ops, callback, claims it ends) of each queued mirror body, in queue order
        self._queued: deque[tuple[int, Callback | None, tuple[bytes, ...]]] = deque()
        # files a mirror is reading or sending: a replication op on one of
        # them (or on a folder above one) waits until the mirror's frames
        # for it have left, so that it is applied after the mirror's copy
        self._claims: dict[bytes, int] = {}
        self.link: Link | None = None
        self.queue: ReplicationQueue | None = None
        self._seq = 0
        self._seq_lock = threading.Lock()
        # held while a queued body moves to _pending, so that when_acked
        # never finds it in neither
        self._moving = threading.Lock()
        self._pending: OrderedDict[int, tuple[int, Callback | None, int]] = OrderedDict()
        self._unacked_ops = 0
        self._cv = threading.Condition()
        self._resume = threading.Event()
        self._resume.set()
        self._held = threading.Event()  # the user paused transmission
        self._thread: threading.Thread | None = None
        self.dropped: list[OpFailure] = []  # ops the target gave up, not yet taken
        self.missed: set[bytes] = set()  # names the target reported missing, not yet taken
        self.more_missed = False
        self.notice: Notice | None = None  # the target's latest word on an op it retries
        self.on_notice_hook: Callable[[Notice], None] | None = None
        # (wire bytes, seconds) of each stretch the link spent draining a
        # backlog of mirror frames: the link's own rate (see _send_mirror)
        self.on_drained: Callable[[int, float], None] | None = None
        self._drain: tuple[float, int] | None = None  # (since, bytes) while behind

    def start(self, link: Link, queue: ReplicationQueue) -> None:
        """Transmit over a new link from a new queue; a replication stream
        first learns what the target applied."""
        self.link, self.queue = link, queue
        if self.rep is not None:
            self.rep.resume(link)
        self._thread = threading.Thread(target=self._transmit, name=self.name, daemon=True)
        self._thread.start()

    @property
    def paused(self) -> bool:
        """Whether the target's flow control holds the mirror back."""
        return not self._resume.is_set()

    @property
    def held(self) -> bool:
        """Whether the user paused transmission (:meth:`hold`)."""
        return self._held.is_set()

    def hold(self, on: bool) -> None:
        """Send nothing more (``on``) until called with False: mirror and
        replication ops stay queued, and heartbeats keep the link up."""
        if on:
            self._held.set()
        else:
            self._held.clear()
            self._work.set()

    def check(self) -> Link:
        """The link, or the error that closed it."""
        if self.link is None:
            raise PeerClosed("not connected")
        if self.link.closed:
            err = self.link.error
            raise err if isinstance(err, DTError) else PeerClosed(f"the connection closed ({err})")
        return self.link

    def send_ops(self, ops: list[Op], *, mirror: bool = True, path: bytes | None = None,
                 on_applied: Callback | None = None, release: tuple[bytes, ...] = ()) -> int:
        """Queue ops as one frame; ``on_applied`` runs when the target has
        acknowledged them, and the claims on ``release`` end once it is sent.
        Returns the frame's size on the wire."""
        return self.send_batch(pack_batch(ops), len(ops), mirror=mirror, path=path,
                               on_applied=on_applied, release=release)

    def send_batch(self, body: bytes | bytearray | memoryview, n: int, *, mirror: bool = True,
                   path: bytes | None = None, on_applied: Callback | None = None,
                   release: tuple[bytes, ...] = ()) -> int:
        """:meth:`send_ops` for ops already packed into ``body`` (``n`` of them)."""
        link = self.check()
        # what waits to be sent ahead of this frame tells whether the link is behind
        backlog = self.queue.memory.counts()["pool_used"] if self.queue is not None else 0
        flags, parts = link.ch.encode(body, path, backlog)
        if mirror:
            flags |= FLAG_MIRROR
            if self.rep is not None:
                # a live replication may rename or remove what the mirror
                # listed before its ops land: the passes that follow mend it
                flags |= FLAG_TOLERANT
        with self._cv:
            while self._unacked_ops and self._unacked_ops + n > self.window and not link.closed:
                self._cv.wait(0.5)
        assert self.queue is not None
        record = b"".join([bytes((flags,)), *parts])  # flags, then the body
        while not self._enqueue(record, n, mirror, (n, on_applied, release)):
            # full: room comes as the transmitter sends, which takes _seq_lock
            # to number what it sends, so the wait is made without holding it
            time.sleep(0.002)
        self._work.set()
        self.counters.add("conOpsTx", n)
        self.counters.add("conBytesTx", len(body))
        self.counters.add("conBytesCompressedTx", len(record) + 23)
        return len(record) + 23

    def _enqueue(self, record: bytes, n: int, mirror: bool,
                 entry: tuple[int, Callback | None, tuple[bytes, ...]]) -> bool:
        """Queue one frame's record and its entry in one order; False, with
        neither queued, while the queue has no room."""
        assert self.queue is not None
        with self._seq_lock:
            self.check()
            with self._cv:
                self._queued.append(entry)
                self._unacked_ops += n
            pushed = 0
            try:
                pushed = self.queue.push([record], n, MIRROR if mirror else REPLICATION, timeout=0)
            except QueueClosedError:
                raise PeerClosed("the connection closed") from None
            finally:
                if not pushed:
                    with self._cv:  # ours is the newest, and no record of it was queued
                        self._queued.pop()
                        self._unacked_ops -= n
            return bool(pushed)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until the target has acknowledged every mirror op handed
        over so far."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while self._pending or self._queued:
                self.check()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"{len(self._pending) + len(self._queued)} frames still "
                                       "unacknowledged")
                self._cv.wait(0.2 if left is None else min(left, 0.2))
        self.check()

    def when_acked(self, callback: Callback) -> None:
        """Run ``callback`` (on the thread that reads acknowledgements) once
        the target has acknowledged every mirror frame handed over so far,
        or now if none waits.  Frames dropped before a reconnect never run it."""
        with self._moving, self._cv:
            if self._queued:
                n, old, release = self._queued[-1]
                self._queued[-1] = (n, _chain(old, callback), release)
                return
            if self._pending:  # acknowledgements are cumulative: the newest will do
                seq = next(reversed(self._pending))
                n, old, size = self._pending[seq]
                self._pending[seq] = (n, _chain(old, callback), size)
                return
        callback()

    def attach(self, rep: ReplicationStream) -> None:
        """Carry a live replication stream from now on (and after reconnects)."""
        try:
            rep.resume(self.check())
        except (PeerClosed, NetworkFailedError):
            pass  # the link is down: the stream resumes on the next one
        self.rep = rep
        self._work.set()

    def detach(self) -> None:
        """Stop carrying the replication stream (after the record being sent)."""
        with self._rep_lock:
            self.rep = None

    def wake(self) -> None:
        """New replication records are queued."""
        self._work.set()

    def _transmit(self) -> None:
        link, queue = self.link, self.queue
        assert queue is not None and link is not None
        try:
            while not link.closed:
                self._work.clear()
                if self._held.is_set():
                    self._work.wait(0.05)
                    continue
                sent = False
                with self._rep_lock:
                    rep = self.rep
                    if rep is not None:
                        for _ in range(self.ratio):
                            if not self._send_replication(link, rep):
                                break
                            sent = True
                # a replication record waiting behind a mirror's file sends
                # the mirror's frames even while the mirror is paused
                if self._resume.is_set() or self._behind_mirror:
                    records = queue.pop(64, timeout=0, max_bytes=8 * MB, batch=True)
                    if len(records):
                        self._send_mirror(link, records)
                        sent = True
                if not sent:
                    self._work.wait(0.05)
                    rep = self.rep
                    if rep is not None:
                        rep.tick()
        except QueueClosedError:
            return
        except DTError as e:
            link.fail(e)

    def _number(self, n: int, callback: Callback | None, size: int = 0) -> int:
        with self._seq_lock:
            self._seq += 1
            seq = self._seq
        with self._cv:
            self._pending[seq] = (n, callback, size)
        return seq

    def _send_mirror(self, link: Link, records: Any) -> None:
        frames: list[Any] = []
        released: list[bytes] = []
        for record in records:
            view = memoryview(record)
            body = view[1:]
            with self._moving:
                with self._cv:
                    n, callback, release = self._queued.popleft()
                seq = self._number(n, callback, len(body))
            frames += [link.ch.header(OPS, view[0], [body], seq), body]
            released += release
        link.send_parts(frames)
        for path in released:
            self.release(path)
        self._measure(sum(len(f) for f in frames))

    def _measure(self, nbytes: int) -> None:
        """The link's rate, from the stretches in which mirror frames were
        still queued after a send: only then is the link what holds the
        mirror back.  Timing the queueing of a frame instead would measure
        the queue (hundreds of MB take frames at memory speed, whatever the
        link), and a link that keeps up says no more than that it does."""
        now = time.perf_counter()
        assert self.queue is not None
        behind = self.queue.memory.counts()["pool_used"] > 0
        if self._drain is not None:
            since, sent = self._drain
            sent += nbytes
            hook = self.on_drained
            if hook is not None and sent >= MB:
                hook(sent, now - since)
                since, sent = now, 0
            self._drain = (since, sent) if behind else None
        elif behind:
            self._drain = (now, 0)

    # -- claims: replication ops after the mirror's copy of a file --------------
    def claim(self, path: bytes) -> None:
        """A mirror is about to read ``path``."""
        with self._cv:
            self._claims[path] = self._claims.get(path, 0) + 1

    def release(self, path: bytes) -> None:
        """The mirror's frames for ``path`` have left (or it sent none)."""
        with self._cv:
            left = self._claims.get(path, 0) - 1
            if left > 0:
                self._claims[path] = left
            else:
                self._claims.pop(path, None)
        self._work.set()

    def _claimed(self, record: bytes) -> bool:
        """Whether a replication record touches a claimed file or a folder
        above one."""
        with self._cv:
            claims = list(self._claims)
        if not claims:
            return False
        for op in unpack_batch(memoryview(record)[REP_HEAD.size:]):
            names = (op[3], bytes(op[5])) if op[0] in (OpKind.RENAME, OpKind.LINK) else (op[3],)
            for name in names:
                prefix = name + b"/"
                if any(c == name or c.startswith(prefix) for c in claims):
                    return True
        return False

    def _send_replication(self, link: Link, rep: ReplicationStream) -> bool:
        self._behind_mirror = False
        if self._unacked_ops >= self.window:
            return False
        item = rep.next()
        if item is None:
            return False
        if self._claims and self._claimed(item.record):
            rep.put_back(item)
            self._behind_mirror = True
            return False
        flags, parts = link.ch.encode(item.record)
        flags |= FLAG_REP | (FLAG_TOLERANT if self.mirroring or rep.tolerant else 0)
        with self._cv:
            self._unacked_ops += item.ops
        seq = self._number(0, None)
        rep.sent(item, seq)
        link.send_parts([link.ch.header(OPS, flags, parts, seq), *parts])
        size = sum(len(p) for p in parts) + 24
        self.counters.add("conOpsTx", item.ops)
        self.counters.add("conBytesTx", len(item.record))
        self.counters.add("conBytesCompressedTx", size)
        self.counters["conOpsInAckQueue"] = self._unacked_ops
        return True

    # -- the link's callbacks --------------------------------------------------
    def on_ack(self, seq: int, body: Any = b"") -> None:
        done: list[Callback] = []
        if len(body):
            ack = Ack.parse(json_object(body, "ACK"))
            for d in ack.dropped:
                emit(6002, detail=f"the target gave up an op on {os.fsdecode(d.path)} "
                                  f"({d.reason}, code {d.code}); the target needs a remirror")
            with self._cv:
                self.dropped.extend(ack.dropped)
                room = MAX_MISSED - len(self.missed)
                self.missed.update(ack.missed[:room])
                self.more_missed |= ack.more_missed or len(ack.missed) > room
        self.notice = None
        received = size = 0
        with self._cv:
            while self._pending:
                first = next(iter(self._pending))
                if first > seq:
                    break
                n, callback, nbytes = self._pending.pop(first)
                self._unacked_ops -= n
                received += n
                size += nbytes
                if callback is not None:
                    done.append(callback)
        if received:  # what the target has of this source (the rep stream counts its own)
            self.counters.add("conOpsRx", received)
            self.counters.add("conBytesRx", size)
        rep = self.rep
        if rep is not None:
            done_ops = rep.acked(seq)
            with self._cv:
                self._unacked_ops -= done_ops
        with self._cv:
            self._cv.notify_all()
        self.counters["conOpsInAckQueue"] = self._unacked_ops
        self._work.set()
        for callback in done:
            callback()

    def on_flow(self, fields: dict[str, Any]) -> None:
        if Flow.parse(fields).pause:
            self._resume.clear()
        else:
            self._resume.set()
            self._work.set()

    def on_notice(self, fields: dict[str, Any]) -> None:
        notice = Notice.parse(fields)
        self.notice = notice
        f = notice.failure
        emit(6001, detail=f"the target is retrying an op on {os.fsdecode(f.path)} ({f.reason}; "
                          f"attempt {notice.retries}); later ops wait for it")
        hook = self.on_notice_hook
        if hook is not None:
            hook(notice)

    def take_missed(self) -> tuple[set[bytes], bool]:
        """The names the target reported missing since the last call (see
        :class:`Ack`), and whether more were left out."""
        with self._cv:
            missed, more = self.missed, self.more_missed
            self.missed, self.more_missed = set(), False
        return missed, more

    def take_dropped(self) -> list[OpFailure]:
        """The ops the target gave up since the last call."""
        with self._cv:
            dropped, self.dropped = self.dropped, []
        return dropped

    def on_close(self) -> None:
        self._resume.set()
        if self.queue is not None:
            self.queue.close()
        self._work.set()
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
            self._queued.clear()
            self._claims.clear()  # the mirror resumes, claiming afresh
            self._unacked_ops = 0
        self._resume.set()
