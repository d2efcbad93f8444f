"""lz4 block compression of op payloads, under the guide's rules.

A payload goes raw when it is smaller than ``MinCompressionFileSize``, when
its file's extension is in ``SkipCompressionFileExt``, or when lz4 does not
make it smaller; the frame header says which.  A compressed payload is sent
as ``(header, body)`` so that a raw body is the caller's own buffer, never
copied (send both with ``socket.sendmsg``)."""
from __future__ import annotations

import os
import struct
from typing import Any, NamedTuple

import lz4.block

from dtcore._buffers import byte_view
from dtcore._native._compress import compress_blocks as _compress_blocks
from dtcore.control import settings
from dtcore.errors import InvalidParameterError, StreamError

# magic, flags, reserved, original size, stored size: csrc/dt_compress.h writes it
_HEADER = struct.Struct("<HBBII")
HEADER_SIZE = _HEADER.size
_MAGIC = 0x5A44  # "DZ"
FLAG_LZ4 = 1
#: lz4 cannot expand data more than about 255 times; a header claiming more is forged.
_MAX_RATIO = 255
DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024


class Payload(NamedTuple):
    """A framed payload: an 8+4 byte header and the stored body."""

    header: bytes
    body: Any

    @property
    def compressed(self) -> bool:
        return bool(self.header[2] & FLAG_LZ4)

    def __bytes__(self) -> bytes:
        return self.header + bytes(self.body)


class Compressor:
    """Applies the compression rules; one instance per connection."""

    def __init__(self,
                 min_size: int = settings.default("MinCompressionFileSize"),
                 skip_ext: str = settings.default("SkipCompressionFileExt"),
                 acceleration: int = 1,
                 max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.min_size = settings.check("MinCompressionFileSize", min_size)
        settings.check("SkipCompressionFileExt", skip_ext)
        self.skip_ext = frozenset(e.lower() for e in skip_ext.split(".") if e)
        if not 1 <= acceleration <= 65537:
            raise InvalidParameterError(f"acceleration={acceleration}: allowed range is 1..65537")
        self.acceleration = acceleration
        self.max_payload = max_payload

    def skips(self, path: str | bytes | None) -> bool:
        """Whether files at ``path`` are sent raw because of their extension."""
        if path is None:
            return False
        ext = os.path.splitext(os.fsdecode(path))[1][1:].lower()
        return ext in self.skip_ext

    def compress(self, data: Any, path: str | bytes | None = None) -> Payload:
        """Frame ``data`` (of a file at ``path``, if known), compressed when
        the rules allow and lz4 makes it smaller."""
        return self.compress_many([data], path)[0]

    def compress_many(self, blocks: list[Any], path: str | bytes | None = None) -> list[Payload]:
        """Frame many payloads of one file in one call: the rules are applied
        once and the blocks are compressed in C with the GIL released."""
        if type(blocks) is not list:
            blocks = list(blocks)
        return _compress_blocks(blocks, self.min_size, self.acceleration, self.skips(path),
                                self.max_payload, Payload, byte_view)

    def decompress(self, header: Any, body: Any = None) -> bytes | memoryview:
        """The original payload from a header and body, or from one frame
        (header followed by body).  Damaged frames raise :class:`StreamError`."""
        hv = byte_view(header, "header")
        if body is None:
            hv, bv = hv[:HEADER_SIZE], hv[HEADER_SIZE:]
        else:
            bv = byte_view(body, "body")
        if len(hv) < HEADER_SIZE:
            raise StreamError(f"frame header cut short: {len(hv)} of {HEADER_SIZE} bytes")
        magic, flags, reserved, original, stored = _HEADER.unpack(hv[:HEADER_SIZE])
        if magic != _MAGIC:
            raise StreamError(f"not a compressed frame (magic {magic:#06x})")
        if flags & ~FLAG_LZ4 or reserved:
            raise StreamError(f"unknown frame flags {flags:#x}/{reserved:#x}")
        if stored != len(bv):
            raise StreamError(f"frame body is {len(bv)} bytes, header says {stored}")
        if original > self.max_payload:
            raise StreamError(f"frame claims {original} bytes, limit is {self.max_payload}")
        if not flags & FLAG_LZ4:
            if original != stored:
                raise StreamError(f"raw frame sizes disagree: {original} and {stored}")
            return bv
        if original > stored * _MAX_RATIO + 16 or stored >= original:
            raise StreamError(f"frame sizes are impossible for lz4: {stored} -> {original}")
        try:
            out = lz4.block.decompress(bv, uncompressed_size=original)
        except lz4.block.LZ4BlockError as e:
            raise StreamError(f"corrupted lz4 body: {e}") from None
        if len(out) != original:
            raise StreamError(f"lz4 body decoded to {len(out)} bytes, header says {original}")
        return out
