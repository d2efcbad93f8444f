"""The link rate a mirror plans with (whole file or compared blocks) is the
rate at which the link drains a backlog of mirror frames, measured through
a proxy that paces the source's bytes: not the rate at which frames are
queued, which is memory speed whatever the link."""
from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from dtcore.model.repset import ReplicationSet
from dtcore.source.mirror import FULL
from dtcore.source.mirror.options import MirrorOptions
from dtcore.source.mirror.run import Mirror

pytestmark = pytest.mark.timeout(60)
SECRET = "link-rate-secret"
RATE = 8 << 20  # bytes a second, source to target


class PacedProxy:
    """Loopback proxy to ``port`` passing source-to-target bytes at ``rate``
    a second (the replies go back unpaced)."""

    def __init__(self, port: int, rate: float) -> None:
        self.upstream, self.rate = port, rate
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                a, _ = self.sock.accept()
            except OSError:
                return
            b = socket.create_connection(("127.0.0.1", self.upstream))
            for x, y, rate in ((a, b, self.rate), (b, a, 0.0)):
                threading.Thread(target=self._pipe, args=(x, y, rate), daemon=True).start()

    @staticmethod
    def _pipe(x: socket.socket, y: socket.socket, rate: float) -> None:
        start, moved = time.monotonic(), 0
        try:
            while data := x.recv(64 << 10):
                moved += len(data)
                ahead = moved / rate - (time.monotonic() - start) if rate else 0
                if ahead > 0:
                    time.sleep(ahead)
                y.sendall(data)
        except OSError:
            pass
        finally:
            for s in (x, y):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def test_a_mirror_behind_a_slow_link_plans_with_that_links_rate(engine, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(24 << 20))  # random: compression cannot shrink it
    target = engine.start_target(tmp_path / "tgt", port=0)
    proxy = PacedProxy(target.port, RATE)
    try:
        repset = ReplicationSet(src)
        conn = engine.connect(repset, "127.0.0.1", proxy.port, "p")
        m = Mirror(conn, repset, MirrorOptions.from_config(engine.config, mode=FULL))
        start_value = m.rates.net
        m.run()
        conn.close()
    finally:
        proxy.close()
    assert (tmp_path / "tgt" / "p" / "big").read_bytes() == (src / "big").read_bytes()
    # timing the queueing instead read hundreds of MB/s here; the socket
    # buffers on both sides of the proxy let it read a little fast
    assert m.rates.net != start_value
    assert RATE / 2 < m.rates.net < RATE * 2, m.rates.net / RATE
