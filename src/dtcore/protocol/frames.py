"""Frames over TCP (or TLS), and the socket options the guide sets.

A frame is a 24-byte header and a body::

    magic u32 'DTW1' | type u8 | flags u8 | reserved u16 (0) | length u32 |
    crc u32 | seq u64

``crc`` is CRC-32C of the seq and the body when the sender sets FLAG_CRC
(EnableCRCCheck); a frame with FLAG_LZ4 carries a compressed payload
(:mod:`dtcore.model.compression`).  Nothing in a header or body is trusted before
it is checked: an unknown type, a frame over the negotiated maximum or a
damaged body raises the documented error and the connection closes."""
from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
from typing import Any, Callable

from dtcore._native._queue import crc32c
from dtcore.control.events import emit
from dtcore.errors import (
    DataOverloadError,
    DTError,
    HandshakeIncompleteError,
    NetworkFailedError,
    StreamError,
    from_code,
)
from dtcore.model.compression import Compressor
from dtcore.protocol.adaptive import AUTO, Adaptive
from dtcore.protocol.tls import is_tls

HEADER = struct.Struct("<IBBHIIQ")
HEADER_SIZE = HEADER.size
MAGIC = 0x31575444  # "DTW1"
FLAG_CRC, FLAG_LZ4, FLAG_MIRROR = 1, 2, 4
# An OPS frame of the live replication stream: its body starts with REP_HEAD.
# TOLERANT: sent while a mirror runs, so an op may name what the mirror has
# not brought yet (see dtcore.source.replication).
FLAG_REP, FLAG_TOLERANT = 8, 16
_KNOWN_FLAGS = FLAG_CRC | FLAG_LZ4 | FLAG_MIRROR | FLAG_REP | FLAG_TOLERANT
# batch number u64 | when its ops were generated (ns since the epoch) u64
REP_HEAD = struct.Struct("<QQ")
DEFAULT_MAX_FRAME = 64 << 20
# Handshake frames (read before the peer has proved anything): at most this
# large, never compressed, and JSON nested at most _JSON_DEPTH deep.
_HANDSHAKE_MAX = 16 << 10
_JSON_DEPTH = 4
_SEQ = struct.Struct("<Q")
# frame types
HELLO, CHALLENGE, PROOF, WELCOME, REFUSE, OPS, ACK, REQUEST, REPLY, HEARTBEAT, FLOW, BYE, NOTICE = (
    range(1, 14))
TYPE_NAMES = {v: k for k, v in dict(
    HELLO=HELLO, CHALLENGE=CHALLENGE, PROOF=PROOF, WELCOME=WELCOME, REFUSE=REFUSE, OPS=OPS, ACK=ACK,
    REQUEST=REQUEST, REPLY=REPLY, HEARTBEAT=HEARTBEAT, FLOW=FLOW, BYE=BYE, NOTICE=NOTICE).items()}


def json_object(body: Any, what: str) -> dict[str, Any]:
    """A JSON object from a peer, refused (StreamError) when it is not valid
    JSON, not an object, or nested deeper than _JSON_DEPTH: the depth is
    counted on the brackets outside strings before parsing, so no input can
    make the parser recurse far."""
    raw = bytes(body)
    depth = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub(b"", raw)):
        depth += 1 if bracket in b"[{" else -1
        if depth > _JSON_DEPTH:
            raise StreamError(f"{what} nests JSON deeper than {_JSON_DEPTH} levels")
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        raise StreamError(f"{what} is not valid JSON") from None
    if not isinstance(obj, dict):
        raise StreamError(f"{what} is not a JSON object")
    return obj


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")


class PeerClosed(NetworkFailedError):
    """The peer closed the connection (cleanly or not)."""


def refuse_error(body: bytes) -> DTError:
    """The exception a REFUSE frame carries."""
    try:
        info = json_object(body, "REFUSE")
        return from_code(int(info["code"]), f"the peer refused: {info['message']}")
    except (ValueError, KeyError, TypeError):
        return StreamError("the peer refused with an unreadable reason")


def tune_socket(sock: socket.socket, network_timeout: int, buffer_size: int) -> None:
    """Keep-alives at one sixth of NetworkTimeout, TCPBufferSize (0: kernel
    auto-tuning), no Nagle delay for small frames."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if network_timeout > 0:
        idle = max(1, network_timeout // 6)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 6)
    if buffer_size:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer_size)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_size)


class Channel:
    """One connection's frames: thread-safe sends, one reader."""

    def __init__(self, sock: socket.socket, *, crc: bool = False,
                 compressor: Compressor | None = None, max_frame: int = DEFAULT_MAX_FRAME,
                 compression: str = AUTO) -> None:
        self.sock = sock
        self.crc = crc
        self.compressor = compressor
        # whether compressing pays on this link (protocol.adaptive)
        self.policy = Adaptive(compression)
        self.max_frame = max_frame
        self._send_lock = threading.Lock()
        self._tls = is_tls(sock)
        self._head = bytearray(HEADER_SIZE)
        # With transient_ops, an uncompressed OPS body is read into one buffer
        # reused for every such frame (a fresh one costs a zeroed allocation
        # and its page faults per frame): the receiver must be done with the
        # body before it reads the next frame (a target copies it into its queue).
        self.transient_ops = False
        self._rx = bytearray()
        # where an uncompressed OPS body may be read instead: a writable view
        # of exactly the length asked for, or None for the buffer above
        self.ops_buffer: Callable[[int], memoryview | None] | None = None
        self.bytes_tx = self.bytes_rx = 0
        self.closed = False

    # -- sending ---------------------------------------------------------
    def encode(self, body: Any, path: bytes | None = None,
               backlog: int = 0) -> tuple[int, list[Any]]:
        """(flags, body parts): compressed when the rules allow and it pays
        (on this link, for this data, with ``backlog`` bytes queued ahead:
        :mod:`dtcore.protocol.adaptive`)."""
        c = self.compressor
        n = len(body)
        if c is not None and n and n >= c.min_size and not c.skips(path) and \
                self.policy.want(backlog):
            start = time.perf_counter()
            payload = c.compress(body, path)
            self.policy.compressed(n, len(payload.body) if payload.compressed else n,
                                   time.perf_counter() - start)
            if payload.compressed:
                return FLAG_LZ4, [payload.header, payload.body]
        return 0, [body]

    def header(self, ftype: int, flags: int, parts: list[Any], seq: int = 0) -> bytes:
        """The frame header for encoded parts, with the CRC when enabled."""
        crc = 0
        if self.crc:
            flags |= FLAG_CRC
            crc = crc32c(_SEQ.pack(seq))
            for p in parts:
                crc = crc32c(memoryview(p).cast("B"), crc)
        return HEADER.pack(MAGIC, ftype, flags, 0, sum(len(p) for p in parts), crc, seq)

    def frame(self, ftype: int, body: Any = b"", *, seq: int = 0, flags: int = 0,
              path: bytes | None = None) -> list[Any]:
        """Header and body parts of one frame."""
        extra, parts = self.encode(body, path)
        return [self.header(ftype, flags | extra, parts, seq), *parts]

    def send_parts(self, parts: list[Any]) -> None:
        """Send prepared frames in one call."""
        total = sum(len(p) for p in parts)
        with self._send_lock:
            start = time.perf_counter()
            try:
                if self._tls:
                    self.sock.sendall(b"".join(parts))
                else:
                    _sendmsg_all(self.sock, parts, total)
            except OSError as e:
                self.closed = True
                raise PeerClosed(f"sending to the peer failed: {e}") from None
            self.policy.sent(total, time.perf_counter() - start)
            self.bytes_tx += total

    def send(self, ftype: int, body: Any = b"", *, seq: int = 0, flags: int = 0,
             path: bytes | None = None) -> None:
        self.send_parts(self.frame(ftype, body, seq=seq, flags=flags, path=path))

    def send_json(self, ftype: int, obj: dict[str, Any]) -> None:
        """A small control frame (handshake, FLOW, REFUSE): never compressed,
        so that a peer can read it before it agreed to decompress anything."""
        body = json.dumps(obj).encode()
        self.send_parts([self.header(ftype, 0, [body]), body])

    # -- receiving -------------------------------------------------------
    def _read_exact(self, view: memoryview) -> None:
        got = 0
        while got < len(view):
            try:
                n = self.sock.recv_into(view[got:])
            except socket.timeout:
                raise
            except OSError as e:
                raise PeerClosed(f"the connection failed: {e}") from None
            if n == 0:
                raise PeerClosed("the peer closed the connection")
            got += n
        self.bytes_rx += got

    def recv(self, limit: int | None = None, compressed: bool = True) -> tuple[int, int, int, Any]:
        """The next frame: (type, flags, seq, body).  Raises DataOverloadError
        (-231) for a frame over the limit and StreamError (-229) for a bad
        header, checksum or compressed body, or for any compressed body when
        ``compressed`` is false; event 4071 marks a bad checksum."""
        head = memoryview(self._head)
        self._read_exact(head)
        magic, ftype, flags, reserved, length, crc, seq = HEADER.unpack(head)
        if magic != MAGIC:
            raise StreamError(f"not a dtcore frame (magic {magic:#010x})")
        if ftype not in TYPE_NAMES or flags & ~_KNOWN_FLAGS or reserved:
            raise StreamError(f"unknown frame type {ftype} or flags {flags:#x}")
        cap = self.max_frame if limit is None else limit
        if length > cap:
            raise DataOverloadError(f"a {TYPE_NAMES[ftype]} frame of {length} bytes is over the "
                                    f"negotiated maximum of {cap}")
        plain_ops = ftype == OPS and not flags & FLAG_LZ4
        body: Any = self.ops_buffer(length) if plain_ops and self.ops_buffer else None
        if body is None and self.transient_ops and plain_ops:
            if len(self._rx) < length:
                self._rx = bytearray(max(length, 2 * len(self._rx)))
            body = memoryview(self._rx)[:length]
        elif body is None:
            body = bytearray(length)
        if length:
            self._read_exact(memoryview(body))
        if flags & FLAG_CRC:
            got = crc32c(memoryview(body), crc32c(_SEQ.pack(seq)))
            if got != crc:
                detail = f"{TYPE_NAMES[ftype]} frame {seq}: CRC {got:#010x}, expected {crc:#010x}"
                emit(4071, detail=detail)
                raise StreamError(f"checksum mismatch in {detail}")
        if flags & FLAG_LZ4:
            if not compressed:
                raise StreamError(f"a compressed {TYPE_NAMES[ftype]} frame where none is allowed")
            decoder = self.compressor or Compressor(max_payload=self.max_frame)
            body = decoder.decompress(body)
        return ftype, flags, seq, body

    def recv_json(self, expect: int) -> dict[str, Any]:
        """A handshake frame of type ``expect`` as JSON; a REFUSE raises its error."""
        ftype, _, _, body = self.recv(_HANDSHAKE_MAX, compressed=False)
        if ftype == REFUSE:
            raise refuse_error(body)
        if ftype != expect:
            raise HandshakeIncompleteError(
                f"expected {TYPE_NAMES[expect]} during the handshake, got {TYPE_NAMES[ftype]}")
        return json_object(body, TYPE_NAMES[expect])

    def refuse(self, err: DTError) -> None:
        """Tell the peer why it is being dropped (best effort) and close."""
        try:
            self.send_json(REFUSE, {"code": err.code, "message": err.args[0] if err.args else ""})
        except DTError:
            pass
        self.close()

    def close(self) -> None:
        self._rx = bytearray()  # a frame's worth of memory, not kept until collected
        if not self.closed:
            self.closed = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.sock.close()


def _sendmsg_all(sock: socket.socket, parts: list[Any], total: int) -> None:
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    sent = 0
    while sent < total:
        n = sock.sendmsg(views[:512])
        sent += n
        while n:
            if n >= len(views[0]):
                n -= len(views[0])
                views.pop(0)
            else:
                views[0] = views[0][n:]
                n = 0
