"""The wire protocol: frames over TCP (or TLS), the versioned handshake with
challenge-response authentication, and the socket options the guide sets.

A frame is a 24-byte header and a body::

    magic u32 'DTW1' | type u8 | flags u8 | reserved u16 (0) | length u32 |
    crc u32 | seq u64

``crc`` is CRC-32C of the seq and the body when the sender sets FLAG_CRC
(EnableCRCCheck); a frame with FLAG_LZ4 carries a compressed payload
(:mod:`dtcore.compression`).  Nothing in a header or body is trusted before
it is checked: an unknown type, a frame over the negotiated maximum or a
damaged body raises the documented error and the connection closes."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import socket
import ssl
import struct
import threading
from typing import Any

from dtcore._native._queue import crc32c
from dtcore.compression import Compressor
from dtcore.errors import (AccessDeniedError, DataOverloadError, DTError, HandshakeIncompleteError,
                           IncompatibleVersionError, NetworkFailedError, StreamError, from_code)
from dtcore.events import emit

PROTOCOL_VERSION = 1
MIN_VERSION = 1
HEADER = struct.Struct("<IBBHIIQ")
HEADER_SIZE = HEADER.size
MAGIC = 0x31575444  # "DTW1"
FLAG_CRC, FLAG_LZ4, FLAG_MIRROR = 1, 2, 4
_KNOWN_FLAGS = FLAG_CRC | FLAG_LZ4 | FLAG_MIRROR
DEFAULT_MAX_FRAME = 64 << 20
_HANDSHAKE_MAX = 64 << 10
_SEQ = struct.Struct("<Q")

# frame types
HELLO, CHALLENGE, PROOF, WELCOME, REFUSE, OPS, ACK, REQUEST, REPLY, HEARTBEAT, FLOW, BYE = range(1, 13)
TYPE_NAMES = {v: k for k, v in dict(
    HELLO=HELLO, CHALLENGE=CHALLENGE, PROOF=PROOF, WELCOME=WELCOME, REFUSE=REFUSE, OPS=OPS, ACK=ACK,
    REQUEST=REQUEST, REPLY=REPLY, HEARTBEAT=HEARTBEAT, FLOW=FLOW, BYE=BYE).items()}


class PeerClosed(NetworkFailedError):
    """The peer closed the connection (cleanly or not)."""


def refuse_error(body: bytes) -> DTError:
    """The exception a REFUSE frame carries."""
    try:
        info = json.loads(bytes(body))
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
                 compressor: Compressor | None = None, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.sock = sock
        self.crc = crc
        self.compressor = compressor
        self.max_frame = max_frame
        self._send_lock = threading.Lock()
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._head = bytearray(HEADER_SIZE)
        self.bytes_tx = self.bytes_rx = self.payload_tx = 0
        self.closed = False

    # -- sending ---------------------------------------------------------
    def encode(self, body: Any, path: bytes | None = None) -> tuple[int, list[Any]]:
        """(flags, body parts): compressed when the rules allow and it pays."""
        self.payload_tx += len(body)
        if self.compressor is not None and len(body):
            payload = self.compressor.compress(body, path)
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
            try:
                if self._tls:
                    self.sock.sendall(b"".join(parts))
                else:
                    _sendmsg_all(self.sock, parts, total)
            except OSError as e:
                self.closed = True
                raise PeerClosed(f"sending to the peer failed: {e}") from None
            self.bytes_tx += total

    def send(self, ftype: int, body: Any = b"", *, seq: int = 0, flags: int = 0,
             path: bytes | None = None) -> None:
        self.send_parts(self.frame(ftype, body, seq=seq, flags=flags, path=path))

    def send_json(self, ftype: int, obj: dict[str, Any]) -> None:
        self.send(ftype, json.dumps(obj).encode())

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

    def recv(self, limit: int | None = None) -> tuple[int, int, int, Any]:
        """The next frame: (type, flags, seq, body).  Raises DataOverloadError
        (-231) for a frame over the limit and StreamError (-229) for a bad
        header, checksum or compressed body; event 4071 marks a bad checksum."""
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
            decoder = self.compressor or Compressor(max_payload=self.max_frame)
            body = decoder.decompress(body)
        return ftype, flags, seq, body

    def recv_json(self, expect: int) -> dict[str, Any]:
        """A handshake frame of type ``expect`` as JSON; a REFUSE raises its error."""
        ftype, _, _, body = self.recv(_HANDSHAKE_MAX)
        if ftype == REFUSE:
            raise refuse_error(body)
        if ftype != expect:
            raise HandshakeIncompleteError(
                f"expected {TYPE_NAMES[expect]} during the handshake, got {TYPE_NAMES[ftype]}")
        try:
            obj = json.loads(bytes(body))
        except ValueError:
            raise StreamError(f"{TYPE_NAMES[expect]} is not valid JSON") from None
        if not isinstance(obj, dict):
            raise StreamError(f"{TYPE_NAMES[expect]} is not a JSON object")
        return obj

    def refuse(self, err: DTError) -> None:
        """Tell the peer why it is being dropped (best effort) and close."""
        try:
            self.send_json(REFUSE, {"code": err.code, "message": err.args[0] if err.args else ""})
        except DTError:
            pass
        self.close()

    def close(self) -> None:
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


# -- authentication -------------------------------------------------------
def _mac(secret: bytes, role: bytes, source_nonce: bytes, target_nonce: bytes,
         binding: bytes) -> str:
    return hmac.new(secret, b"dtcore-auth\0" + role + source_nonce + target_nonce + binding,
                    hashlib.sha256).hexdigest()


def _binding(sock: socket.socket) -> bytes:
    """The TLS channel binding, so a relay in the middle cannot reuse a proof."""
    if isinstance(sock, ssl.SSLSocket):
        return sock.get_channel_binding("tls-unique") or b""
    return b""


def _hex(obj: dict[str, Any], key: str, size: int) -> bytes:
    value = obj.get(key)
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise StreamError(f"handshake field {key} is missing or malformed")
    return raw


def client_handshake(ch: Channel, secret: bytes, hello: dict[str, Any]) -> dict[str, Any]:
    """The source's side: offer versions, answer the challenge, check that the
    target knows the secret too.  Returns the WELCOME fields."""
    nonce = secrets.token_bytes(32)
    ch.send_json(HELLO, {**hello, "version": PROTOCOL_VERSION, "min_version": MIN_VERSION,
                         "nonce": nonce.hex(), "max_frame": ch.max_frame})
    challenge = ch.recv_json(CHALLENGE)
    target_nonce = _hex(challenge, "nonce", 32)
    binding = _binding(ch.sock)
    ch.send_json(PROOF, {"mac": _mac(secret, b"source", nonce, target_nonce, binding)})
    welcome = ch.recv_json(WELCOME)
    expected = _mac(secret, b"target", nonce, target_nonce, binding)
    if not hmac.compare_digest(str(welcome.get("mac", "")), expected):
        raise AccessDeniedError("the target could not prove it knows the shared secret")
    ch.max_frame = min(ch.max_frame, int(challenge.get("max_frame", ch.max_frame)))
    return welcome


def server_handshake(ch: Channel, secret: bytes, welcome: Any) -> dict[str, Any]:
    """The target's side.  ``welcome(hello)`` returns extra WELCOME fields once
    the source is admitted.  A version mismatch raises -157, a wrong proof
    -138; both are sent to the peer before the error is raised."""
    try:
        hello = ch.recv_json(HELLO)
        version, low = hello.get("version"), hello.get("min_version")
        if not isinstance(version, int) or not isinstance(low, int):
            raise StreamError("HELLO lacks its version numbers")
        if version < MIN_VERSION or low > PROTOCOL_VERSION:
            raise IncompatibleVersionError(
                f"the source speaks versions {low}..{version}, this target "
                f"{MIN_VERSION}..{PROTOCOL_VERSION}")
        source_nonce = _hex(hello, "nonce", 32)
        nonce = secrets.token_bytes(32)
        offered = hello.get("max_frame")
        if isinstance(offered, int) and 1 << 16 <= offered < ch.max_frame:
            ch.max_frame = offered
        ch.send_json(CHALLENGE, {"version": min(version, PROTOCOL_VERSION), "nonce": nonce.hex(),
                                 "max_frame": ch.max_frame})
        proof = ch.recv_json(PROOF)
        binding = _binding(ch.sock)
        if not hmac.compare_digest(str(proof.get("mac", "")),
                                   _mac(secret, b"source", source_nonce, nonce, binding)):
            raise AccessDeniedError("the source did not prove the shared secret")
        extra = welcome(hello)
        ch.send_json(WELCOME, {**extra, "mac": _mac(secret, b"target", source_nonce, nonce, binding)})
        return hello
    except (IncompatibleVersionError, AccessDeniedError, StreamError, DataOverloadError,
            HandshakeIncompleteError) as e:
        ch.refuse(e)
        raise


# -- TLS --------------------------------------------------------------------
_CIPHERS = "ECDHE+AESGCM:!AES128:!aNULL"


def server_tls(certfile: str, keyfile: str) -> ssl.SSLContext:
    """TLS for a target (EncryptNetworkData 1): TLS 1.2 with AES-256-GCM only,
    so the handshake can bind to tls-unique."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(_CIPHERS)
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


def client_tls() -> ssl.SSLContext:
    """TLS for a source.  The certificate is not checked against a CA: the
    peer is authenticated by the shared secret, bound to this TLS session."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(_CIPHERS)
    return ctx


def self_signed(directory: str) -> tuple[str, str]:
    """Create (or reuse) a self-signed certificate and key for a target."""
    cert, key = os.path.join(directory, "target.crt"), os.path.join(directory, "target.key")
    if os.path.exists(cert) and os.path.exists(key):
        return cert, key
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    pkey = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dtcore target")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(pkey.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=3650))
                   .sign(pkey, hashes.SHA256()))
    os.makedirs(directory, exist_ok=True)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pkey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    with open(cert, "wb") as f:
        f.write(certificate.public_bytes(serialization.Encoding.PEM))
    return cert, key


def secret_bytes(secret: str | bytes | None) -> bytes:
    """The shared secret from an argument or $DTCORE_SECRET; there is no default."""
    if secret is None:
        secret = os.environ.get("DTCORE_SECRET")
    if not secret:
        raise AccessDeniedError("no shared secret: pass one or set DTCORE_SECRET")
    return secret.encode() if isinstance(secret, str) else bytes(secret)

