"""The statistics server on ``StatsPort`` (1506): live snapshots for
``dtstat -server``.

On connect the server sends the statistics file header (so the client
learns the schema); then each request line ``SNAP`` gets one record in the
statistics file format.  Anything else closes that connection."""
from __future__ import annotations

import socket
import socketserver
import zlib
from pathlib import Path

from dtcore.control import settings
from dtcore.control.serving import BackgroundServer
from dtcore.control.stats import Snapshot, Statistics
from dtcore.control.stsfile import HEADER_SIZE, RECORD_HEAD, decode, encode, header, parse_header
from dtcore.errors import ERRORS, InvalidStatisticsFileError

_MAX_REQUEST = 64


class _Handler(socketserver.StreamRequestHandler):
    timeout = 30

    def handle(self) -> None:
        stats: Statistics = self.server.stats  # type: ignore[attr-defined]
        self.wfile.write(header())
        while True:
            line = self.rfile.readline(_MAX_REQUEST)
            if line.strip() != b"SNAP":
                return
            self.wfile.write(encode(stats.snapshot()))


class StatsServer(BackgroundServer):
    """Serves ``stats`` on ``host:port`` from a background thread."""

    def __init__(self, stats: Statistics, host: str = "127.0.0.1",
                 port: int = settings.default("StatsPort")) -> None:
        if port:
            settings.check("StatsPort", port)
        super().__init__(host, port, _Handler, "statistics server")
        self.stats = stats


class StatsClient:
    """Fetches snapshots from a statistics server."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.where = Path(f"{host}:{port}")
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise ERRORS[-109](f"no statistics server at {host}:{port}: {e.strerror or e}") from None
        self._buf = b""
        head = self._read(HEADER_SIZE)
        self.schema, _ = parse_header(head + self._read(int.from_bytes(head[12:16], "little")),
                                      self.where)

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ERRORS[-110](f"statistics server {self.where} closed the connection")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def snapshot(self) -> Snapshot:
        self._sock.sendall(b"SNAP\n")
        size, crc = RECORD_HEAD.unpack(self._read(RECORD_HEAD.size))
        body = self._read(size)
        if zlib.crc32(body) != crc:
            raise InvalidStatisticsFileError(f"{self.where}: a snapshot failed its checksum")
        return decode(body, 0, self.where, self.schema)

    def close(self) -> None:
        self._sock.close()
