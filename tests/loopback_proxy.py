"""A TCP proxy on 127.0.0.1 for tests of a link that misbehaves: it counts
the bytes of each direction, can cut its first connection after a number
of bytes in one direction, and can pace the source-to-target direction to
a rate (the replies go back unpaced)."""
from __future__ import annotations

import socket
import threading
import time

UP, DOWN = "source->target", "target->source"


class CuttingProxy:
    """Proxy to ``port``.  The first connection is cut (both sockets shut)
    once ``cut_after`` bytes have passed in ``direction``; later connections
    pass untouched.  With ``rate``, bytes going UP pass at that many a
    second."""

    def __init__(self, port: int, direction: str = UP, cut_after: int | None = None,
                 rate: float = 0.0) -> None:
        self.upstream = port
        self.direction = direction
        self.cut_after = cut_after
        self.rate = rate
        self.moved = {UP: 0, DOWN: 0}
        self.cuts = 0
        self.connections = 0
        self._lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            with self._lock:
                self.connections += 1
                first = self.connections == 1
            pair = (client, server)
            for src, dst, way in ((client, server, UP), (server, client, DOWN)):
                threading.Thread(target=self._pump, args=(src, dst, way, first, pair),
                                 daemon=True).start()

    def _pump(self, src, dst, way, first, pair) -> None:
        start, paced = time.monotonic(), 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.rate and way == UP:
                    paced += len(data)
                    ahead = paced / self.rate - (time.monotonic() - start)
                    if ahead > 0:
                        time.sleep(ahead)
                limit = self.cut_after if first and way == self.direction else None
                with self._lock:
                    sent = self.moved[way]
                    if limit is not None and sent + len(data) >= limit:
                        data = data[:max(0, limit - sent)]
                if data:
                    dst.sendall(data)
                with self._lock:
                    self.moved[way] += len(data)
                    if limit is not None and self.moved[way] >= limit:
                        self.cuts += 1
                        break
        except OSError:
            pass
        for s in pair:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
