"""The statistics server on ``StatsPort`` (1506): live snapshots for
``dtstat -server``.

On connect the server sends the statistics file header (so the client
learns the schema); then each request line ``SNAP`` gets one record in the
statistics file format.  Anything else closes that connection."""
from __future__ import annotations

import socket
import socketserver
import threading
import zlib
from pathlib import Path

from dtcore.control import settings
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


class StatsServer(socketserver.ThreadingTCPServer):
    """Serves ``stats`` on ``host:port`` from a background thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, stats: Statistics, host: str = "127.0.0.1",
                 port: int = settings.default("StatsPort")) -> None:
        if port:
            settings.check("StatsPort", port)
        try:
            super().__init__((host, port), _Handler)
        except OSError as e:
            raise ERRORS[-186](f"statistics server on {host}:{port}: {e.strerror}") from None
        self.stats = stats
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dtcore-statserver", daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> StatsServer:
        self._thread.start()
        return self

    def _serve(self) -> None:
        # blocks in accept until a client comes (no polling); stop() wakes it
        while not self._stopping.is_set():
            self.handle_request()

    def verify_request(self, request: object, client_address: object) -> bool:
        return not self._stopping.is_set()

    def stop(self) -> None:
        self._stopping.set()
        host = self.server_address[0]
        wake = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        try:
            socket.create_connection((wake, self.port), timeout=2).close()
        except OSError:
            pass  # not listening any more: the thread has already ended
        self._thread.join(5)
        self.server_close()


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
