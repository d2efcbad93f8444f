"""One end of an established connection: a reader thread that dispatches
frames, requests with replies matched by ID, and heartbeats.

Both ends send a HEARTBEAT when they have sent nothing for ``HBExternalRate``
seconds; an end that has waited ``HBTTL`` seconds for a frame without
receiving one declares the connection lost (event 5708) and closes it."""
from __future__ import annotations

import json
import struct
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

from dtcore.control.events import emit, log
from dtcore.errors import DTError, StreamError, from_code
from dtcore.protocol.frames import (
    ACK,
    BYE,
    FLOW,
    HEARTBEAT,
    NOTICE,
    OPS,
    REFUSE,
    REPLY,
    REQUEST,
    Channel,
    PeerClosed,
    json_object,
    refuse_error,
)
from dtcore.protocol.messages import METHOD_FIELD

_RPC = struct.Struct("<II")  # request id, JSON length; binary data follows the JSON
Handler = Callable[..., None]


def pack_rpc(req_id: int, params: dict[str, Any], data: Any = b"") -> list[Any]:
    body = json.dumps(params).encode()
    return [_RPC.pack(req_id, len(body)), body, data]


def unpack_rpc(body: Any) -> tuple[int, dict[str, Any], memoryview]:
    view = memoryview(body)
    if len(view) < _RPC.size:
        raise StreamError("request frame is shorter than its header")
    req_id, n = _RPC.unpack_from(view)
    if n > len(view) - _RPC.size:
        raise StreamError("request frame's JSON runs past its end")
    params = json_object(view[_RPC.size:_RPC.size + n], "a request frame's JSON")
    return req_id, params, view[_RPC.size + n:]


class Link:
    """Frames in and out of one connection."""

    def __init__(self, channel: Channel, name: str, *, heartbeat: float = 3, ttl: float = 10,
                 on_ops: Handler | None = None, on_request: Handler | None = None,
                 on_ack: Handler | None = None, on_flow: Handler | None = None,
                 on_notice: Handler | None = None, on_close: Handler | None = None) -> None:
        self.ch = channel
        self.name = name
        self.heartbeat = heartbeat
        self.ttl = ttl
        self.on_ops, self.on_request, self.on_ack = on_ops, on_request, on_ack
        self.on_flow, self.on_notice, self.on_close = on_flow, on_notice, on_close
        self._pending: dict[int, Future[tuple[dict[str, Any], memoryview]]] = {}
        self._next_id = 1
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.error: BaseException | None = None
        self._waiting_since: float | None = None
        self._last_tx = time.monotonic()
        self._threads = [threading.Thread(target=self._read, name=f"{name}-rx", daemon=True),
                         threading.Thread(target=self._beat, name=f"{name}-hb", daemon=True)]

    def start(self) -> "Link":
        for t in self._threads:
            t.start()
        return self

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # -- sending -------------------------------------------------------------
    def send_parts(self, parts: list[Any]) -> None:
        self.ch.send_parts(parts)
        self._last_tx = time.monotonic()

    def send(self, ftype: int, body: Any = b"", **kw: Any) -> None:
        self.send_parts(self.ch.frame(ftype, body, **kw))

    def send_json(self, ftype: int, obj: dict[str, Any], seq: int = 0) -> None:
        self.send(ftype, json.dumps(obj).encode(), seq=seq)

    def request(self, method: str, params: dict[str, Any] | None = None,
                data: Any = b"") -> Future[tuple[dict[str, Any], memoryview]]:
        """Ask the peer; the future gives (reply fields, reply data) or raises
        the error the peer reported."""
        fut: Future[tuple[dict[str, Any], memoryview]] = Future()
        with self._lock:
            if self.closed:
                raise self.error if isinstance(self.error, DTError) else PeerClosed(
                    "the connection is closed")
            req_id = self._next_id
            self._next_id += 1
            self._pending[req_id] = fut
        self.send(REQUEST, b"".join(pack_rpc(req_id, {METHOD_FIELD: method, **(params or {})}, data)))
        return fut

    def call(self, method: str, params: dict[str, Any] | None = None, data: Any = b"",
             timeout: float | None = 300) -> tuple[dict[str, Any], memoryview]:
        return self.request(method, params, data).result(timeout)

    def reply(self, req_id: int, params: dict[str, Any], data: Any = b"") -> None:
        self.send(REPLY, b"".join(pack_rpc(req_id, params, data)))

    def reply_error(self, req_id: int, err: DTError) -> None:
        self.reply(req_id, {"error": err.code, "message": err.args[0] if err.args else ""})

    # -- receiving -----------------------------------------------------------
    def _read(self) -> None:
        error: BaseException | None = None
        try:
            while True:
                self._waiting_since = time.monotonic()
                ftype, flags, seq, body = self.ch.recv()
                self._waiting_since = None
                if ftype == OPS and self.on_ops:
                    self.on_ops(seq, flags, body)
                elif ftype == REQUEST and self.on_request:
                    self.on_request(*unpack_rpc(body))
                elif ftype == REPLY:
                    self._resolve(*unpack_rpc(body))
                elif ftype == ACK and self.on_ack:
                    self.on_ack(seq, body)
                elif ftype == NOTICE and self.on_notice:
                    self.on_notice(json_object(body, "NOTICE"))
                elif ftype == FLOW and self.on_flow:
                    self.on_flow(json_object(body, "FLOW"))
                elif ftype == HEARTBEAT:
                    pass
                elif ftype == REFUSE:
                    self.error = refuse_error(body)
                    break
                elif ftype == BYE:
                    break
                else:
                    raise StreamError(f"unexpected frame type {ftype} on an established connection")
        except BaseException as e:  # noqa: BLE001 - every failure ends the connection the same way
            error = e if self.error is None else self.error
            if isinstance(e, DTError) and not isinstance(e, PeerClosed):
                self.ch.refuse(e)  # tell the peer which rule its frame broke
        self._finish(error)

    def _resolve(self, req_id: int, params: dict[str, Any], data: memoryview) -> None:
        with self._lock:
            fut = self._pending.pop(req_id, None)
        if fut is None:
            raise StreamError(f"reply to unknown request {req_id}")
        if "error" in params:
            fut.set_exception(from_code(int(params["error"]), str(params.get("message", ""))))
        else:
            fut.set_result((params, data))

    def _beat(self) -> None:
        step = min(x for x in (self.heartbeat, self.ttl, 1.0) if x > 0)
        while not self._closed.wait(step / 2):
            now = time.monotonic()
            since = self._waiting_since
            if self.ttl and since is not None and now - since > self.ttl:
                emit(5708, peer=self.name)
                self.fail(PeerClosed(f"nothing heard from {self.name} for {self.ttl:g} s (HBTTL)"))
                return
            if self.heartbeat and now - self._last_tx >= self.heartbeat:
                try:
                    self.send(HEARTBEAT)
                except DTError:
                    return

    def fail(self, error: BaseException) -> None:
        """Close the connection because of ``error``."""
        if self.error is None:
            self.error = error
        self.ch.close()

    def _finish(self, error: BaseException | None) -> None:
        if error is not None and self.error is None:
            self.error = error
        with self._lock:
            self._closed.set()
            pending, self._pending = self._pending, {}
        failure = self.error if isinstance(self.error, DTError) else PeerClosed(
            f"the connection closed ({self.error})" if self.error else "the connection closed")
        for fut in pending.values():
            fut.set_exception(failure)
        self.ch.close()
        if error is not None and not isinstance(error, PeerClosed):
            log.debug("%s closed: %s", self.name, error)
        if self.on_close:
            self.on_close(self.error)

    def close(self) -> None:
        """Say goodbye and close."""
        if not self.closed:
            try:
                self.send(BYE)
            except DTError:
                pass
        self.ch.close()
        for t in self._threads:
            # a link closed before start() (its session stopped meanwhile) has no threads yet
            if t is not threading.current_thread() and t.ident is not None:
                t.join(5)
