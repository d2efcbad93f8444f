"""The source end of a connection: connects and authenticates to a target
path, asks it questions (manifests, checksums, signatures, reads) and hands
op batches to its transmitter (:mod:`dtcore.source.transmitter`), which
sends them in order and collects the target's acknowledgements."""
from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Iterator

import numpy as np

from dtcore.control import settings
from dtcore.control.config import Config
from dtcore.control.events import emit
from dtcore.control.stats import ConState, Counters, Statistics
from dtcore.errors import ConnectionFailedError, DTError, InvalidParameterError
from dtcore.model.compression import Compressor
from dtcore.model.ops import Attrs, Op
from dtcore.protocol.adaptive import AUTO
from dtcore.protocol.frames import Channel, tune_socket
from dtcore.protocol.handshake import client_handshake, secret_bytes
from dtcore.protocol.link import Link
from dtcore.protocol.messages import (
    FileReply,
    Hello,
    ManifestReply,
    ManifestRequest,
    Request,
    RootRequest,
    StateReply,
    StateRequest,
    SumsRequest,
    Welcome,
)
from dtcore.protocol.tls import client_tls
from dtcore.queues.records import MB
from dtcore.queues.replication import ReplicationQueue
from dtcore.source.transmitter import Transmitter


def parse_address(text: str, default_port: int | None = None) -> tuple[str, int, str]:
    """``HOST[:PORT][:TARGETPATH]`` → (host, port, target path).  An IPv6
    host goes in brackets (``[::1]:1500:data``).  With three parts the middle
    one must be a port (1-65535); with two, digits are a port and anything
    else is the target path.  InvalidParameterError for anything else."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not host or (rest and not rest.startswith(":")):
            raise InvalidParameterError(f"{text!r}: an IPv6 address goes in brackets, "
                                        "as [::1]:1500:path")
        parts = rest[1:].split(":", 1) if rest else []
    else:
        host, *parts = text.split(":", 2)
    if not host:
        raise InvalidParameterError(f"{text!r} names no host")
    port = default_port or settings.default("NetPort")
    path = ""
    if len(parts) == 2:
        if not parts[0].isdigit():
            raise InvalidParameterError(f"{text!r}: {parts[0]!r} is not a port number")
        port, path = int(parts[0]), parts[1]
    elif len(parts) == 1:
        if parts[0].isdigit():
            port = int(parts[0])
        else:
            path = parts[0]
    if not 1 <= port <= 65535:
        raise InvalidParameterError(f"{text!r}: port {port} is outside 1-65535")
    return host, port, path.strip("/")


class Connection:
    """An authenticated connection from this source to a target path."""

    def __init__(self, host: str, port: int | None = None, target_path: str = "", *,
                 secret: str | bytes | None = None, config: Config | None = None,
                 stats: Statistics | None = None, conn_id: int = 1, repset: str = "",
                 tls: bool | None = None, compression: bool | str = True) -> None:
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
        self.source_id = secrets.token_hex(16)  # kept across reconnects
        self.tx = Transmitter(self.config["SourcePendingAcks"], self.counters, f"dtcore-tx-{conn_id}",
                              self.config["HPQueueRatio"])
        self.generation = 0  # links made so far: a reconnect of a link already replaced is moot
        self._connect_lock = threading.Lock()

    def _counts(self) -> dict[str, int]:
        """Statistics read at each snapshot: the mirror queue's, and a live
        replication's (its queue, ack window and recovery point)."""
        counts = self.queue.counts() if self.queue is not None else {}
        rep = self.tx.rep
        if rep is not None:
            counts.update(rep.counts())
        # every op waiting to be sent, of either kind
        counts["conOpsInCmdQueue"] = counts.get("conOpsInRepQueue", 0) + \
            counts.get("conOpsInMirQueue", 0)
        memory = counts.get("conBytesInRepQueue", 0) - counts.get("conBytesInDiskQueue", 0)
        limit = self.config["QMemoryBufferMax"] * MB
        # how close the memory queue is to the point where it spills to disk
        counts["DriverQueuePercent"] = min(100, max(0, memory) * 100 // limit) if limit else 0
        return counts

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
            ch = Channel(sock, crc=bool(cfg["EnableCRCCheck"]), compressor=compressor,
                         compression=self.compression if isinstance(self.compression, str)
                         else AUTO)
            welcome = client_handshake(ch, self.secret, Hello(
                self.target_path, self.repset, compressor is not None, self.source_id).fields())
            sock.settimeout(None)
        except (OSError, DTError) as e:
            sock.close()
            if isinstance(e, DTError):
                raise
            raise ConnectionFailedError(f"handshake with {self.host}:{self.port} failed: {e}") from None
        self.target_state = Welcome.parse(welcome).state
        # mirror frames waiting to be sent (the window bounds them)
        self.queue = ReplicationQueue(memory_bytes=cfg["QMemoryBufferMax"] * MB,
                                      max_ops=cfg["OpBufferSize"], alert_threshold=0)
        self.stats.feed(self.id, self._counts)
        self.link = Link(ch, f"target {self.host}:{self.port}", heartbeat=cfg["HBExternalRate"],
                         ttl=cfg["HBTTL"], on_ack=self.tx.on_ack, on_flow=self.tx.on_flow,
                         on_notice=self.tx.on_notice,
                         on_close=self._on_close).start()
        self.generation += 1
        try:
            self.tx.start(self.link, self.queue)
        except BaseException:
            self.link.close()
            raise
        self.counters["conState"] = int(ConState.PAUSED if self.tx.held else ConState.ACTIVE)
        self.counters["connectTime"] = int(time.time())
        emit(4016, conn=self.label())
        return self

    def reconnect(self, generation: int | None = None) -> "Connection":
        """Drop what was in flight (a mirror resumes from its acknowledged
        files, a replication resends what was not acknowledged) and connect
        again.  With ``generation`` (the link that failed), nothing happens
        when another thread has made a new link since."""
        with self._connect_lock:
            if generation is not None and generation != self.generation and self.alive:
                return self
            if self.link is not None:
                self.link.close()
            self.tx.drop_in_flight()
            self.link = None
            return self.connect()

    @property
    def alive(self) -> bool:
        return self.link is not None and not self.link.closed

    # -- requests ------------------------------------------------------------
    def call(self, request: Request, timeout: float | None = 600,
             data: Any = b"") -> tuple[dict[str, Any], memoryview]:
        """Ask the target (with ``data`` after the fields) and wait: (reply
        fields, reply data)."""
        return self.tx.check().call(request.METHOD, request.fields(), data, timeout=timeout)

    def request(self, request: Request) -> Future[tuple[dict[str, Any], memoryview]]:
        """Ask the target; the future gives (reply fields, reply data)."""
        return self.tx.check().request(request.METHOD, request.fields())

    def manifest_parts(self, first: Any = None, hash_below: int = 0) -> Iterator[memoryview]:
        """The target's listing of its path, part by part as the target
        walks it.  ``first`` is the pending reply of an earlier
        ``request(ManifestRequest(...))``.  The next part is asked for as
        soon as one arrives, so the target walks while the caller works."""
        pending = first if first is not None else self.request(ManifestRequest(hash_below))
        got = 0
        while True:
            reply, data = pending.result(600)
            more = ManifestReply.parse(reply).more
            got += len(data)
            if more:
                pending = self.request(ManifestRequest(hash_below, offset=got))
            yield data
            if not more:
                return

    def manifest(self, first: Any = None, hash_below: int = 0) -> bytes:
        """The target's whole listing of its path (see :meth:`manifest_parts`)."""
        return b"".join(self.manifest_parts(first, hash_below))

    def set_root_attrs(self, root: str | bytes) -> None:
        """Give the target path's own folder the mode, owner and times of
        the local folder ``root``."""
        self.call(RootRequest(Attrs.of(os.lstat(root)).pack()))

    def pause(self) -> None:
        """Stop transmitting to the target (event 4015, conState paused):
        mirror and replication ops keep queueing, in memory and then on
        disk, until :meth:`resume`.  A reconnect keeps the pause."""
        if not self.tx.held:
            self.tx.hold(True)
            if self.alive:
                self.counters["conState"] = int(ConState.PAUSED)
            emit(4015, conn=self.label())

    def resume(self) -> None:
        """Transmit again after :meth:`pause` (event 4014)."""
        if self.tx.held:
            self.tx.hold(False)
            if self.alive:
                self.counters["conState"] = int(ConState.ACTIVE)
            emit(4014, conn=self.label())

    def set_state(self, state: str, reason: str = "") -> str:
        """Set the target path's data state; returns it as the target now
        has it (also kept as ``target_state``)."""
        self.target_state = StateReply.parse(self.call(StateRequest(state, reason))[0]).state
        return self.target_state

    def root_attrs(self) -> Attrs:
        """The mode, owner and times of the target path's own folder."""
        return Attrs.unpack(bytes(self.call(RootRequest())[1]))

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
                 on_applied: Callable[[], None] | None = None,
                 release: tuple[bytes, ...] = ()) -> int:
        """Queue ops as one frame (see :meth:`Transmitter.send_ops`)."""
        return self.tx.send_ops(ops, mirror=mirror, path=path, on_applied=on_applied,
                                release=release)

    def send_batch(self, body: bytes | bytearray | memoryview, n: int, *,
                   on_applied: Callable[[], None] | None = None) -> int:
        """Queue ``n`` mirror ops packed into ``body`` as one frame."""
        return self.tx.send_batch(body, n, mirror=True, on_applied=on_applied)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until the target has acknowledged every op sent so far."""
        self.tx.flush(timeout)

    def _on_close(self, error: BaseException | None) -> None:
        self.tx.on_close()
        self.counters["conState"] = int(ConState.ERROR) if error else int(ConState.NONE)
        emit(4017, conn=self.label())

    def close(self, timeout: float = 30) -> None:
        """Wait up to ``timeout`` seconds for what was queued to be
        acknowledged, then disconnect."""
        if self.link is None:
            return
        if not self.link.closed and timeout > 0:
            try:
                self.flush(timeout=timeout)
            except (DTError, TimeoutError):
                pass
        self.link.close()
        self.tx.join()

    def __enter__(self) -> "Connection":
        return self.connect() if self.link is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()
