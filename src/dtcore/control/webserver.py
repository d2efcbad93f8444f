"""The daemon's HTTP server: ``/`` the replication service view (a page that
reads the API), ``/api/status`` its document as JSON, and ``/metrics`` for
Prometheus (the text format of prometheus-client), all read-only; and
``POST /api/connections/<id>/pause`` and ``/resume``, which change what a
connection does and so need ``Authorization: Bearer <token>`` (without a
token the server refuses every POST).  It blocks in accept between
requests (no polling) and stop() wakes it."""
from __future__ import annotations

import hmac
import json
import re
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

    def do_POST(self) -> None:  # noqa: N802
        m = re.fullmatch(r"/api/connections/(\d+)/(pause|resume)", self.path.split("?")[0])
        if m is None:
            self._json(404, {"error": "actions: POST /api/connections/<id>/pause or /resume"})
            return
        token = self.server.token
        if token is None:
            self._json(403, {"error": "this server is read-only: it was started without a token"})
            return
        given = self.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), b"Bearer " + token):
            self._json(401, {"error": "a valid Authorization: Bearer <token> header is needed"},
                       {"WWW-Authenticate": 'Bearer realm="dtcore"'})
            return
        row = self.server.act(int(m[1]), m[2])
        if row is None:
            self._json(404, {"error": f"no connection {m[1]}"})
        else:
            self._json(200, row)

    def _json(self, code: int, doc: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds is not news


class WebServer(BackgroundServer):
    """Serves ``collector`` and the ``status`` document on ``host:port``
    (0: any free port); with a ``token``, POSTs carrying it call ``act(id,
    action)``, which returns the connection's row of the document (None for
    no such connection)."""

    def __init__(self, collector: EngineCollector, status: Callable[[], dict[str, Any]],
                 host: str = "127.0.0.1", port: int = 0, *, token: bytes | None = None,
                 act: Callable[[int, str], dict[str, Any] | None] = lambda i, a: None) -> None:
        super().__init__(host, port, _Handler, "http")
        self.collector = collector
        self.status = status
        self.token = token or None
        self.act = act
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
