"""What the engine's own servers share (the statistics server, the HTTP
server): binding with the guide's -186 on failure, serving from one
background thread that blocks in accept (no polling), and a stop that
wakes it with a connection of its own."""
from __future__ import annotations

import socket
import socketserver
import threading
from typing import Any

from dtcore.errors import ERRORS


class BackgroundServer(socketserver.ThreadingTCPServer):
    """A threading TCP server run by :meth:`start` until :meth:`stop`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, handler: Any, what: str) -> None:
        try:
            super().__init__((host, port), handler)
        except OSError as e:
            raise ERRORS[-186](f"{what} on {host}:{port}: {e.strerror}") from None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"dtcore-{what}", daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> Any:
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stopping.is_set():
            self.handle_request()

    def verify_request(self, request: Any, client_address: Any) -> bool:
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
