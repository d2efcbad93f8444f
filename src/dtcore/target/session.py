"""One source's session on the target: the reader takes OPS frames off the
socket into a native memory queue, the applier thread applies them through
the lanes beneath the target path and acknowledges each frame once applied,
and requests run on two helper threads once every op received before them
is applied, so hashing on the target runs beside applying.  When mirror data
waiting in memory passes ``TGMirrorCapacityHigh`` percent of system memory
the source is told to pause its mirror, and to resume below
``TGMirrorCapacityLow``.  The pause also comes before the queue would spill
mirror data to its journal (``QMemoryBufferMax`` times
``MemoryQueueToDiskThreshold``, less room for what is in flight): the
source still has that data in its files, so holding it back costs nothing,
while spilling it would write it twice more to the disk that is already
what the mirror waits for."""
from __future__ import annotations

import collections
import errno
import json
import os
import shutil
import socket
import stat
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from dtcore.apply.applier import Applier
from dtcore.apply.lanes import Lanes
from dtcore.apply.safe_paths import SafeRoot
from dtcore.control.events import emit
from dtcore.control.stats import Counters
from dtcore.control.timers import StageTimers
from dtcore.errors import (
    DTError,
    FileAccessError,
    HandshakeIncompleteError,
    InvalidParameterError,
    InvalidPathError,
    QueueClosedError,
    StreamError,
    TargetDiskFullError,
)
from dtcore.model.compression import Compressor
from dtcore.model.manifest import Parts
from dtcore.model.ops import unpack_batch
from dtcore.model.paths import check_path
from dtcore.protocol.frames import (
    ACK,
    FLAG_MIRROR,
    FLAG_REP,
    FLAG_TOLERANT,
    FLOW,
    NOTICE,
    REP_HEAD,
    Channel,
    tune_socket,
)
from dtcore.protocol.handshake import server_handshake
from dtcore.protocol.link import Link
from dtcore.protocol.messages import METHOD_FIELD, Ack, Flow, Hello, Notice, OpFailure, Welcome
from dtcore.queues.records import MB, MIRROR, REPLICATION
from dtcore.queues.replication import ReplicationQueue
from dtcore.target.handoff import Handoff
from dtcore.target.requests import HANDLERS
from dtcore.target.states import MIRROR_REQUIRED, STATE_DIR

if TYPE_CHECKING:
    from dtcore.target.service import Target

# what a source may have sent before it sees a pause: the frames of one
# transmitter send and the socket buffers of both ends
IN_FLIGHT = 32 * MB
_PLAIN_ACK = Ack()  # nothing dropped or missed: the ACK goes without a body


class Session:
    """One source connected to the target."""

    def __init__(self, target: Target, sock: socket.socket, peer: str, conn_id: int) -> None:
        # Nothing costly here: until the peer proves the secret, a session is
        # a socket, a thread and a handshake deadline.  Counters and request
        # threads come with authentication, the queue with the first ops.
        self.target = target
        self.sock = sock
        self.peer = peer
        self.id = conn_id
        self.authenticated = False
        self.timers = StageTimers()  # the work this session's requests cost (a profile asks)
        self.thread: threading.Thread | None = None
        self.source_id = ""
        self.link: Link | None = None
        self.root: SafeRoot | None = None
        self.path = ""
        self.stopping = threading.Event()
        self.queue: ReplicationQueue | None = None
        self._queue_dir = ""
        # the live replication this session serves: its source identity, the
        # last batch applied from it, and whether the next batch may repeat
        # one half applied when the target stopped (it then tolerates ops
        # whose effect is already there)
        self.rep_source: str | None = None
        self.rep_applied = 0
        self.replay = False
        self.counters: Counters | None = None
        self._paused = False
        self._flow = threading.Lock()
        self._received = 0
        self._applied = 0
        # the frame number, flags and handed-over body (None: the record is
        # the body) of each record in the queue, in queue order (one reader
        # appends, one applier takes)
        self._seqs: collections.deque[tuple[int, int, memoryview | None]] = collections.deque()
        self._handoff = Handoff()
        self._cv = threading.Condition()
        self._helpers: ThreadPoolExecutor | None = None
        self._applier: threading.Thread | None = None
        self._views = threading.local()  # each request thread's clone of the root
        # the manifest being walked, a part for each request, and the
        # records sent of it so far
        self.manifest: Parts | None = None
        self.manifest_sent = 0
        self._clones: list[SafeRoot] = []
        self._expired = False
        self.gave_up = False
        self._dropped: list[OpFailure] = []  # given up since the last ACK
        # names tolerated ops of a mirror's time found missing, since the last ACK
        self._missed: list[bytes] = []
        self._more_missed = False
        self._stale: set[bytes] = set()

    def label(self) -> str:
        return f"from {self.peer} (connection {self.id})"

    def run(self) -> None:
        """The session thread: handshake, then serve until the link closes.
        Whatever happens, the session lets go of everything it holds."""
        try:
            ch = self._handshake()
            if ch is not None:
                self._authenticated(ch)
        except Exception as e:  # a bug in one session must not outlive it
            emit(6002, detail=f"session {self.label()} failed: {type(e).__name__}: {e}")
        finally:
            self._release()

    def _handshake(self) -> Channel | None:
        """The authenticated channel, or None (said with event 6002) when the
        peer failed the handshake or did not finish it in time."""
        cfg, deadline = self.target.config, self.target.handshake_timeout
        # one deadline for the whole exchange, TLS included: a peer that
        # trickles bytes cannot hold the session by resetting a read timeout
        timer = threading.Timer(deadline, self._expire)
        timer.daemon = True
        timer.start()
        try:
            tune_socket(self.sock, cfg["NetworkTimeout"], cfg["TCPBufferSize"])
            self.sock.settimeout(deadline)
            sock = self.sock
            if self.target._tls is not None:
                sock = self.target._tls.wrap_socket(sock, server_side=True)
            ch = Channel(sock)
            hello = server_handshake(ch, self.target.secret, self._welcome)
            if Hello.parse(hello).compress:  # replies (manifests, checksums) too
                ch.compressor = Compressor(max_payload=ch.max_frame)
            sock.settimeout(None)
            return ch
        except Exception as e:  # any failure of an unauthenticated peer ends here
            err = HandshakeIncompleteError(f"the handshake did not finish within {deadline:g} s") \
                if self._expired else e
            if isinstance(err, DTError) and err.code == -138:
                self.target.stats.server.add("FailedLogins")
            emit(6002, detail=f"connection {self.label()} refused: {err}")
            return None
        finally:
            timer.cancel()

    def _expire(self) -> None:
        self._expired = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _authenticated(self, ch: Channel) -> None:
        """Serve an admitted source until its link closes."""
        target, cfg = self.target, self.target.config
        self.counters = target.stats.target(self.peer, f"{target.host}:{target.port}")
        high, low = cfg["TGMirrorCapacityHigh"], min(cfg["TGMirrorCapacityLow"], cfg["TGMirrorCapacityHigh"])
        spill = cfg["QMemoryBufferMax"] * MB * cfg["MemoryQueueToDiskThreshold"] // 100
        self._high = target.memory_bytes * high // 100
        if spill >= 2 * IN_FLIGHT:  # a smaller queue spills mirror data as it would any other
            self._high = min(self._high, spill - IN_FLIGHT)
        self._low = self._high * low // high
        self._helpers = ThreadPoolExecutor(2, thread_name_prefix=f"dtcore-target-{self.id}-rq")
        target.stats.server.add("Logins")
        emit(4016, conn=self.label())
        ch.transient_ops = True  # _on_ops copies each body into the queue before the next read
        ch.ops_buffer = self._lend  # ... unless it hands the body over whole
        self.link = Link(ch, f"source {self.peer}", heartbeat=cfg["HBExternalRate"], ttl=cfg["HBTTL"],
                         on_ops=self._on_ops, on_request=self._on_request, on_close=self._on_close)
        self.link.start()
        self.stopping.wait()  # set when the link closes
        if self._applier is not None:
            self._applier.join()

    def _start_applying(self) -> None:
        """The queue and the applier, from the first op batch on: a source
        that only asks questions (verify, restore) costs no queue ring."""
        cfg = self.target.config
        # what arrives faster than it is applied waits in memory, then on disk
        # (a session's own folder: nothing in it is acknowledged, so it need
        # not outlive the session)
        self._queue_dir = tempfile.mkdtemp(prefix=f"queue-{os.getpid()}-", dir=self.target.state_dir)
        self.queue = ReplicationQueue(
            self._queue_dir, memory_bytes=cfg["QMemoryBufferMax"] * MB, max_ops=cfg["OpBufferSize"],
            to_disk_threshold=cfg["MemoryQueueToDiskThreshold"], segment_mb=cfg["QJournalFileSize"],
            space_max_mb=cfg["QJournalSpaceMax"], free_min_mb=cfg["QJournalFreeSpaceMin"],
            write_through=False, alert_threshold=0)
        self._applier = threading.Thread(target=self._apply_loop, name=f"dtcore-apply-{self.id}",
                                         daemon=True)
        self._applier.start()

    def _release(self) -> None:
        self.stop()
        if self.link is None:
            self.sock.close()
        if self.queue is not None:
            self.queue.memory.close()
            if self._applier is not None:  # it may have started after the link closed
                self._applier.join()
            self.queue.close(discard=True)
            shutil.rmtree(self._queue_dir, ignore_errors=True)
        self._handoff.close()
        # the session lingers until the collector breaks its cycles (threads,
        # the link's callbacks): what is large goes now, or a long-lived
        # target holds a walk for every session it served
        self.manifest = None
        if self._helpers is not None:
            self._helpers.shutdown(wait=True)
        for root in self._clones:
            root.close()
        if self.root is not None:
            self.root.close()
        self.target.forget(self)

    def _welcome(self, fields: dict[str, Any]) -> dict[str, Any]:
        hello = Hello.parse(fields)
        path = hello.target_path.strip("/")
        if path:
            check_path(os.fsencode(path), STATE_DIR)
        self.source_id = hello.source
        self.path = path
        self.target.admit(self)  # MaxConnections, and one source per target path
        self.root = self.target.root.sub(os.fsencode(path))
        return Welcome(self.target.states.get(path), self.target.host).fields()

    # -- reader thread -----------------------------------------------------
    def _lend(self, length: int) -> memoryview | None:
        """A buffer of the handoff for the next OPS body, when the queue's
        memory settings leave room for it (see dtcore.target.handoff)."""
        queue = self.queue
        return None if queue is None else self._handoff.buffer(length, queue.memory_room())

    def _on_ops(self, seq: int, flags: int, body: Any) -> None:
        if self.queue is None:
            self._start_applying()
        assert self.queue is not None
        kind = _kind(flags)
        info = _count_ops(body, REP_HEAD.size if flags & FLAG_REP else 0)
        with self._cv:
            self._received = seq
        self.counters.add("Ops Received", info)
        if kind == MIRROR:
            self.counters.add("Mirror Ops Received", info)
        lent = self._handoff.claim(body, kind)
        self._seqs.append((seq, flags, lent))  # before the push, so the applier always finds it
        try:
            self.queue.push([b"" if lent is not None else body], info, kind)
        except QueueClosedError:
            raise StreamError("the target queue is closed") from None
        if kind == MIRROR:
            self._flow_check()

    def _flow_check(self) -> None:
        """Pause the source's mirror above TGMirrorCapacityHigh, resume it at
        or below TGMirrorCapacityLow.  The reader and the applier both call
        this; under one lock the queue is read where the decision is made, so
        a pause can never follow the applier's last look at a drained queue."""
        assert self.link is not None
        with self._flow:
            queued = self.queue.counts()["conBytesInMirQueue"] + self._handoff.bytes[MIRROR]
            if not self._paused and queued > self._high:
                self._paused = True
                self.target.flow_pauses += 1
                self.link.send_json(FLOW, Flow(True, -147).fields())
            elif self._paused and queued <= self._low:
                self._paused = False
                self.link.send_json(FLOW, Flow(False, -148).fields())

    # -- applier thread ----------------------------------------------------
    def _apply_loop(self) -> None:
        cfg = self.target.config
        move = None
        if cfg["TGMoveFilesOnDelete"] and cfg["TGMoveFilesPath"]:
            move = SafeRoot(cfg["TGMoveFilesPath"])
        assert self.root is not None and self.link is not None
        applier = Lanes(self.root, lambda root: Applier(
            root, self.counters, retry_delay=cfg["TGRetryLocked"],
            retry_limit=cfg["TGExecutionRetryLimit"], move_deleted_to=move,
            stopping=self.stopping, on_gave_up=self._gave_up, on_retry=self._retrying,
            on_missed=self._missed_name, stale=self._stale), self.target.apply_threads)
        try:
            while True:
                try:
                    records = self.queue.pop(64, timeout=None, max_bytes=16 * MB, batch=True)
                except QueueClosedError:
                    break  # closed and drained
                last = 0
                for record in records:
                    last, flags, lent = self._seqs.popleft()
                    body = record if lent is None else lent
                    try:
                        if flags & FLAG_REP:
                            self._apply_replication(applier, body, flags)
                        else:
                            applier.tolerant = bool(flags & FLAG_TOLERANT)
                            try:
                                applier.apply(unpack_batch(body, lend=True))
                            finally:
                                applier.tolerant = False
                    finally:
                        del body
                        if lent is not None:
                            self._handoff.give_back(lent, _kind(flags))
                with self._cv:
                    self._applied = last
                    self._cv.notify_all()
                counts = self.queue.counts()
                self.counters["Bytes In Target Queue"] = counts["Bytes In Target Queue"] + \
                    sum(self._handoff.bytes.values())
                self.counters["Bytes In Target Disk Queue"] = counts["Bytes In Target Disk Queue"]
                self.counters["Ops Remaining"] = counts["conOpsInRepQueue"] + counts["conOpsInMirQueue"]
                self._flow_check()
                with self._cv:
                    ack = Ack(tuple(self._dropped), tuple(self._missed), self._more_missed)
                    self._dropped, self._missed, self._more_missed = [], [], False
                self.link.send(ACK, json.dumps(ack.fields()).encode()
                               if ack != _PLAIN_ACK else b"", seq=last)
        except (InvalidPathError, StreamError) as e:
            emit(6002, detail=f"op {self.label()} refused: {e}")
            self.link.ch.refuse(e)
            self.link.fail(e)
        except DTError as e:
            self.link.fail(e)
        except OSError as e:
            emit(6002, detail=f"applying ops {self.label()} failed: {e}")
            self.link.fail(e)
        except Exception as e:  # a bug: say so, instead of the closed queue it leaves
            emit(6002, detail=f"applying ops {self.label()} failed: {type(e).__name__}: {e}")
            self.link.fail(e)
            raise
        finally:
            applier.close()
            if move is not None:
                move.close()
            self.queue.memory.close()
            with self._cv:
                self._applied = -1
                self._cv.notify_all()

    def _apply_replication(self, lanes: Lanes, record: Any, flags: int) -> None:
        """One batch of the live stream, applied once: a batch number at or
        below the last one applied from this source is a resend, dropped."""
        view = memoryview(record)
        if len(view) < REP_HEAD.size:
            raise StreamError("a replication batch is shorter than its header")
        if self.rep_source is None:
            raise StreamError("a replication batch came before the replication started")
        seq, _ = REP_HEAD.unpack_from(view)
        if seq <= self.rep_applied:
            return
        lanes.tolerant = bool(flags & FLAG_TOLERANT) or self.replay
        try:
            lanes.apply(unpack_batch(view[REP_HEAD.size:], lend=True))
        finally:
            lanes.tolerant = False
        self.replay = False
        self.rep_applied = seq
        assert self.root is not None
        self.target.applied.set(self.rep_source, seq, self.root.fd)

    def _missed_name(self, name: bytes) -> None:
        # a replay after a restart finds what it applied before: nothing to report
        if self.replay:
            return
        with self._cv:
            if len(self._missed) < Ack.MAX_MISSED:
                self._missed.append(name)
            else:
                self._more_missed = True

    def _gave_up(self, path: bytes, error: OSError) -> None:
        failure = op_failure(path, error)
        self.gave_up = True
        with self._cv:
            self._dropped.append(failure)
        self.target.states.set(self.path, MIRROR_REQUIRED,
                               f"an op was dropped: {os.fsdecode(path)}: {failure.reason}")

    def _retrying(self, path: bytes, error: OSError, tries: int) -> None:
        """Tell the source why its ops wait (it would otherwise see nothing)."""
        assert self.link is not None
        try:
            self.link.send_json(NOTICE, Notice(op_failure(path, error), tries).fields())
        except DTError:
            pass

    # -- requests ----------------------------------------------------------
    def _on_request(self, req_id: int, params: dict[str, Any], data: memoryview) -> None:
        with self._cv:
            barrier = self._received
        self._helpers.submit(self._serve, req_id, params, bytes(data), barrier)

    def _serve(self, req_id: int, params: dict[str, Any], data: bytes, barrier: int) -> None:
        assert self.link is not None
        with self._cv:
            self._cv.wait_for(lambda: self._applied >= barrier or self._applied < 0)
        self.view().refresh()
        try:
            method = params.get(METHOD_FIELD)
            entry = HANDLERS.get(method) if isinstance(method, str) else None
            if entry is None:
                raise StreamError(f"unknown request {method!r}")
            request_class, handler = entry
            reply, out = handler(self, request_class.parse(params), data)
            self.link.reply(req_id, reply.fields(), out)
        except DTError as e:
            if isinstance(e, (InvalidPathError, StreamError)):
                emit(6002, detail=f"request {self.label()} refused: {e}")
            try:
                self.link.reply_error(req_id, e)
            except DTError:
                pass
        except (OSError, ValueError, TypeError, KeyError) as e:
            method = params.get(METHOD_FIELD)
            err: DTError = InvalidParameterError(f"{method}: {e}")
            if isinstance(e, OSError):  # the target's own trouble, with the guide's code
                err = TargetDiskFullError(f"{method}: {e.strerror or e}") \
                    if e.errno in (errno.ENOSPC, errno.EDQUOT) else \
                    FileAccessError(f"{method}: {e.strerror or e}", e.errno or 0)
            try:
                self.link.reply_error(req_id, err)
            except DTError:
                pass

    def view(self) -> SafeRoot:
        """This request thread's own clone of the target path's root."""
        root = getattr(self._views, "root", None)
        if root is None:
            assert self.root is not None
            root = self._views.root = self.root.clone()
            with self._cv:
                self._clones.append(root)
        return root

    @contextmanager
    def target_file(self, path: bytes) -> Iterator[tuple[int, int] | None]:
        """(read-only handle, size) of the file a request names, closed
        afterwards; None when there is no such file."""
        try:
            fd = self.view().open(path, os.O_RDONLY)
        except FileNotFoundError:
            yield None
            return
        try:
            st = os.fstat(fd)
            # anything but a regular file (a FIFO would block a read) is no copy
            yield (fd, st.st_size) if stat.S_ISREG(st.st_mode) else None
        finally:
            os.close(fd)

    def _on_close(self, error: BaseException | None) -> None:
        self.stopping.set()
        if self.queue is not None:
            # pushes end, the applier drains what memory holds (the rest was
            # never acknowledged: the source sends it again)
            self.queue.memory.close()
        emit(4017, conn=self.label())
        self.target.forget(self)

    def stop(self) -> None:
        """Close the connection; the session thread then lets go of the rest."""
        self.stopping.set()
        if self.link is not None:
            self.link.close()
        else:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._helpers is not None:
            self._helpers.shutdown(wait=False, cancel_futures=True)


def _count_ops(body: Any, at: int = 0) -> int:
    """The op count from the header of the batch at ``at`` (after a
    replication frame's REP_HEAD); the full check runs when applied."""
    view = memoryview(body)[at:]
    if len(view) < 16:
        raise StreamError(f"op batch of {len(view)} bytes is shorter than its header")
    return int.from_bytes(view[8:12], "little")


# The guide's code for an op the target cannot apply.
_CODES = {errno.ENOSPC: -173, errno.EDQUOT: -173, errno.EACCES: -138, errno.EPERM: -138}


def op_failure(path: bytes, error: OSError) -> OpFailure:
    return OpFailure(path, _CODES.get(error.errno or 0, -1), error.errno or 0,
                     error.strerror or str(error))


def _kind(flags: int) -> int:
    """Which queue kind an OPS frame's records are, by its flags."""
    return MIRROR if flags & FLAG_MIRROR else REPLICATION
