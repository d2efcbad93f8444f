"""What a path from a peer may be: relative, plain components only, within the
length limits.  Both ends check every path they are sent with this before
any use."""
from __future__ import annotations

from dtcore.errors import InvalidPathError

MAX_NAME = 255
MAX_PATH = 4096


def check_path(path: bytes, reserved: bytes | None = None) -> tuple[bytes, ...]:
    """The components of a peer-supplied relative path, or -225 if it is
    absolute, escapes, holds NUL or is otherwise not a plain path."""
    if not isinstance(path, (bytes, bytearray)):
        raise InvalidPathError(f"path must be bytes, got {type(path).__name__}")
    if not path or len(path) > MAX_PATH:
        raise InvalidPathError(f"path of {len(path)} bytes is empty or too long")
    if path.startswith(b"/"):
        raise InvalidPathError(f"absolute path {path!r} refused")
    if b"\0" in path:
        raise InvalidPathError(f"path {path!r} contains NUL")
    parts = tuple(path.split(b"/"))
    for p in parts:
        if p in (b"", b".", b".."):
            raise InvalidPathError(f"path {path!r} has an empty, '.' or '..' component")
        if len(p) > MAX_NAME:
            raise InvalidPathError(f"a component of {path!r} is over {MAX_NAME} bytes")
    if reserved is not None and parts[0] == reserved:
        raise InvalidPathError(f"path {path!r} is inside the engine's own folder")
    return parts
