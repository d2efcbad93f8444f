"""The versioned handshake: the source offers its versions and frame size, and
each end proves the shared secret to the other by HMAC challenge-response
(bound to the TLS session when there is one).  Nothing but the handshake
frames is accepted before the proofs are checked."""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import socket
from typing import Any

from dtcore.errors import (
    AccessDeniedError,
    DTError,
    IncompatibleVersionError,
    StreamError,
)
from dtcore.protocol.frames import CHALLENGE, HELLO, PROOF, WELCOME, Channel
from dtcore.protocol.tls import is_tls

PROTOCOL_VERSION = 1
MIN_VERSION = 1


# -- authentication -------------------------------------------------------
def _mac(secret: bytes, role: bytes, source_nonce: bytes, target_nonce: bytes,
         binding: bytes) -> str:
    return hmac.new(secret, b"dtcore-auth\0" + role + source_nonce + target_nonce + binding,
                    hashlib.sha256).hexdigest()


def _binding(sock: socket.socket) -> bytes:
    """The TLS channel binding, so a relay in the middle cannot reuse a proof."""
    if is_tls(sock):
        return sock.get_channel_binding("tls-unique") or b""  # type: ignore[attr-defined]
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
    except DTError as e:  # tell the peer which rule it broke, then drop it
        ch.refuse(e)
        raise


def secret_bytes(secret: str | bytes | None) -> bytes:
    """The shared secret from an argument or $DTCORE_SECRET; there is no default."""
    if secret is None:
        secret = os.environ.get("DTCORE_SECRET")
    if not secret:
        raise AccessDeniedError("no shared secret: pass one or set DTCORE_SECRET")
    return secret.encode() if isinstance(secret, str) else bytes(secret)
