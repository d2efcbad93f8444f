"""The source end of a connection: connects and authenticates to a target,
and moves op batches to it through the engine queue and a transmitter.

Producers (mirror workers now, the replication intake next) hand over op
lists; each becomes one OPS frame, compressed and checksummed in the
producer's own thread, numbered and queued in order.  The transmitter sends
queued frames several at a time.  At most ``SourcePendingAcks`` ops may be
unacknowledged; a producer waits beyond that.  A target that asks for a
pause (its mirror memory passed ``TGMirrorCapacityHigh``) stops mirror
frames until it asks to resume."""
from __future__ import annotations

import socket
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import Future
from typing import Any, Callable, Iterator

import numpy as np

from dtcore.control import settings
from dtcore.control.config import Config
from dtcore.control.events import emit
from dtcore.control.stats import ConState, Counters, Statistics
from dtcore.errors import ConnectionFailedError, DTError, QueueClosedError, StreamError
from dtcore.model.compression import Compressor
from dtcore.model.ops import Op, pack_batch
from dtcore.protocol.frames import FLAG_MIRROR, OPS, Channel, PeerClosed, tune_socket
from dtcore.protocol.handshake import client_handshake, secret_bytes
from dtcore.protocol.link import Link
from dtcore.protocol.messages import (
    FileReply,
    Hello,
    ManifestReply,
    ManifestRequest,
    Request,
    SumsRequest,
    Welcome,
)
from dtcore.protocol.tls import client_tls
from dtcore.queues.records import MB, MIRROR, REPLICATION
from dtcore.queues.replication import ReplicationQueue

Callback = Callable[[], None]


def parse_address(text: str, default_port: int | None = None) -> tuple[str, int, str]:
    """``HOST[:PORT][:TARGETPATH]`` → (host, port, target path)."""
    host, _, rest = text.partition(":")
    port_text, _, path = rest.partition(":")
    if port_text and not port_text.isdigit():
        port_text, path = "", rest  # HOST:PATH
    port = int(port_text) if port_text else (default_port or settings.default("NetPort"))
    return host or "127.0.0.1", port, path.strip("/")


class Connection:
    """An authenticated connection from this source to a target path."""

    def __init__(self, host: str, port: int | None = None, target_path: str = "", *,
                 secret: str | bytes | None = None, config: Config | None = None,
                 stats: Statistics | None = None, conn_id: int = 1, repset: str = "",
                 tls: bool | None = None, compression: bool = True) -> None:
        self.config = config or Config(None)
        self.host = host
        self.port = self.config["NetPort"] if port is None else port
        self.target_path = target_path.strip("/")
        self.secret = secret_bytes(secret)
        self.stats = stats or Statistics()
        self.id = conn_id
        self.repset = repset
        self.tls = bool(self.config["EncryptNetworkData"]) if tls is None else tls
        self.compression = compression
        self.counters: Counters = self.stats.connection(conn_id, f"{host}:{self.port}")
        self.link: Link | None = None
        self.target_state = ""
        self.queue: ReplicationQueue | None = None
        self._seq = 0
        self._seq_lock = threading.Lock()
        self._pending: OrderedDict[int, tuple[int, Callback | None]] = OrderedDict()
        self._unacked_ops = 0
        self._window = self.config["SourcePendingAcks"]
        self._cv = threading.Condition()
        self._resume = threading.Event()
        self._resume.set()
        self._tx: threading.Thread | None = None

    def label(self) -> str:
        from dtcore.control.catalogue import connection_label
        return connection_label(f"{self.host}:{self.port}", self.host, self.repset or "-", self.id)

    # -- connecting ----------------------------------------------------------
    def connect(self) -> "Connection":
        """Open, authenticate and start the transmitter (event 4016)."""
        cfg = self.config
        timeout = cfg["NetworkTimeout"] or 30
        try:
            sock = socket.create_connection((self.host, self.port), timeout=min(timeout, 30))
        except OSError as e:
            emit(5716)
            raise ConnectionFailedError(
                f"cannot reach the target at {self.host}:{self.port}: {e.strerror or e}") from None
        tune_socket(sock, cfg["NetworkTimeout"], cfg["TCPBufferSize"])
        try:
            if self.tls:
                sock = client_tls().wrap_socket(sock)
            compressor = Compressor(cfg["MinCompressionFileSize"], cfg["SkipCompressionFileExt"]) \
                if self.compression else None
            ch = Channel(sock, crc=bool(cfg["EnableCRCCheck"]), compressor=compressor)
            welcome = client_handshake(ch, self.secret, Hello(
                self.target_path, self.repset, compressor is not None).fields())
            sock.settimeout(None)
        except (OSError, DTError) as e:
            sock.close()
            if isinstance(e, DTError):
                raise
            raise ConnectionFailedError(f"handshake with {self.host}:{self.port} failed: {e}") from None
        self.target_state = Welcome.parse(welcome).state
        self.queue = ReplicationQueue(memory_bytes=min(cfg["QMemoryBufferMax"], 64) * MB,
                                      max_ops=cfg["OpBufferSize"], alert_threshold=0)
        self.stats.feed(self.id, self.queue.counts)
        self.link = Link(ch, f"target {self.host}:{self.port}", heartbeat=cfg["HBExternalRate"],
                         ttl=cfg["HBTTL"], on_ack=self._on_ack, on_flow=self._on_flow,
                         on_close=self._on_close).start()
        self._tx = threading.Thread(target=self._transmit, name=f"dtcore-tx-{self.id}", daemon=True)
        self._tx.start()
        self.counters["conState"] = int(ConState.ACTIVE)
        self.counters["connectTime"] = int(time.time())
        emit(4016, conn=self.label())
        return self

    def reconnect(self) -> "Connection":
        """Drop what was in flight (a mirror resumes from its acknowledged
        files) and connect again."""
        if self.link is not None:
            self.link.close()
        if self._tx is not None:
            self._tx.join(5)
        with self._cv:
            self._pending.clear()
            self._unacked_ops = 0
        self._resume.set()
        self.link = None
        return self.connect()

    @property
    def alive(self) -> bool:
        return self.link is not None and not self.link.closed

    def _check(self) -> Link:
        if self.link is None:
            raise PeerClosed("not connected")
        if self.link.closed:
            err = self.link.error
            raise err if isinstance(err, DTError) else PeerClosed(f"the connection closed ({err})")
        return self.link

    # -- requests ------------------------------------------------------------
    def call(self, request: Request, timeout: float | None = 600) -> tuple[dict[str, Any], memoryview]:
        """Ask the target and wait: (reply fields, reply data)."""
        return self._check().call(request.METHOD, request.fields(), timeout=timeout)

    def request(self, request: Request) -> Future[tuple[dict[str, Any], memoryview]]:
        """Ask the target; the future gives (reply fields, reply data)."""
        return self._check().request(request.METHOD, request.fields())

    def manifest(self, first: Any = None, hash_below: int = 0) -> memoryview:
        """The target's listing of its path.  ``first`` is the pending reply
        of an earlier ``request(ManifestRequest(...))``; the rest of a listing
        too large for one frame is fetched part by part."""
        reply, data = first.result(600) if first is not None else \
            self.call(ManifestRequest(hash_below))
        total = ManifestReply.parse(reply).total
        if len(data) >= total:
            return data
        parts = bytearray(data)
        while len(parts) < total:
            _, more = self.call(ManifestRequest(hash_below, offset=len(parts)))
            if not more:
                raise StreamError(f"the target's manifest ended at {len(parts)} of {total} bytes")
            parts += more
        return memoryview(parts)

    def block_sums(self, path: bytes, size: int, block: int, per: int,
                   window: int = 16) -> Iterator[tuple[int, FileReply, np.ndarray]]:
        """The target's checksums of a file's blocks, ``per`` blocks to a
        request with ``window`` requests in flight: yields (first block, the
        reply, uint64 sums) in order.  An empty file still gets one request,
        so the reply tells the target copy's size."""
        starts = range(0, max(-(-size // block), 1), per)
        futures: deque[Any] = deque()
        for i, first in enumerate(starts):
            while len(futures) < window and i + len(futures) < len(starts):
                futures.append(self.request(SumsRequest(path, starts[i + len(futures)], per, block)))
            reply, data = futures.popleft().result(600)
            yield first, FileReply.parse(reply), np.frombuffer(data, dtype=np.uint64)

    # -- ops -----------------------------------------------------------------
    def send_ops(self, ops: list[Op], *, mirror: bool = True, path: bytes | None = None,
                 on_applied: Callback | None = None) -> int:
        """Queue ops as one frame; ``on_applied`` runs when the target has
        acknowledged them.  Returns the frame's size on the wire."""
        link = self._check()
        body = pack_batch(ops)
        flags, parts = link.ch.encode(body, path)
        if mirror:
            flags |= FLAG_MIRROR
        n = len(ops)
        with self._cv:
            while self._unacked_ops and self._unacked_ops + n > self._window and not link.closed:
                self._cv.wait(0.5)
        assert self.queue is not None
        with self._seq_lock:
            self._check()
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
                self._check()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"{len(self._pending)} frames still unacknowledged")
                self._cv.wait(0.2 if left is None else min(left, 0.2))
        self._check()

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

    def _on_ack(self, seq: int) -> None:
        done: list[Callback] = []
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

    def _on_flow(self, message: dict[str, Any]) -> None:
        if message.get("pause"):
            self._resume.clear()
        else:
            self._resume.set()

    def _on_close(self, error: BaseException | None) -> None:
        self._resume.set()
        if self.queue is not None:
            self.queue.close()
        self.counters["conState"] = int(ConState.ERROR) if error else int(ConState.NONE)
        with self._cv:
            self._cv.notify_all()
        emit(4017, conn=self.label())

    def close(self) -> None:
        """Wait for what was queued to be acknowledged (briefly), then disconnect."""
        if self.link is None:
            return
        if not self.link.closed:
            try:
                self.flush(timeout=30)
            except (DTError, TimeoutError):
                pass
        self.link.close()
        if self._tx is not None:
            self._tx.join(5)

    def __enter__(self) -> "Connection":
        return self.connect() if self.link is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()
