"""The daemon's HTTP server, read-only: ``/`` the replication service view
(a page that reads the API), ``/api/status`` its document as JSON, and
``/metrics`` for Prometheus (the text format of prometheus-client).  It
blocks in accept between requests (no polling) and stop() wakes it."""
from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from dtcore.control.metrics import EngineCollector
from dtcore.control.serving import BackgroundServer

_PAGE = Path(__file__).with_name("static") / "status.html"


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


class WebServer(BackgroundServer):
    """Serves ``collector`` and the ``status`` document on ``host:port``
    (0: any free port)."""

    def __init__(self, collector: EngineCollector, status: Callable[[], dict[str, Any]],
                 host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port, _Handler, "http")
        self.collector = collector
        self.status = status
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
