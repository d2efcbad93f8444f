"""The daemon's HTTP server, read-only: ``/`` the replication service view
(a page that reads the API), ``/api/status`` its document as JSON, and
``/metrics`` for Prometheus (the text format of prometheus-client).  It
blocks in accept between requests (no polling) and stop() wakes it."""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from dtcore.control.metrics import EngineCollector

_PAGE = Path(__file__).with_name("static") / "status.html"
from dtcore.errors import ERRORS


class _Handler(BaseHTTPRequestHandler):
    server: "WebServer"

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        path = self.path.split("?")[0]
        if path in ("/", "/index.html"):
            body, kind = _PAGE.read_bytes(), "text/html; charset=utf-8"
        elif path == "/metrics":
            body, kind = generate_latest(self.server.registry), CONTENT_TYPE_LATEST
        elif path == "/api/status":
            body = json.dumps(self.server.status()).encode()
            kind = "application/json"
        else:
            self.send_error(404, "served here: /, /api/status and /metrics")
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds is not news


class WebServer(ThreadingHTTPServer):
    """Serves ``collector`` and the ``status`` document on ``host:port``
    (0: any free port)."""

    daemon_threads = True

    def __init__(self, collector: EngineCollector, status: Callable[[], dict[str, Any]],
                 host: str = "127.0.0.1", port: int = 0) -> None:
        try:
            super().__init__((host, port), _Handler)
        except OSError as e:
            raise ERRORS[-186](f"metrics on {host}:{port}: {e.strerror}") from None
        self.collector = collector
        self.status = status
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dtcore-web", daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> "WebServer":
        self._thread.start()
        return self

    def _serve(self) -> None:
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
            pass
        self._thread.join(5)
        self.server_close()
