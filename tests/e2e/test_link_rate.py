"""The link rate a mirror plans with (whole file or compared blocks) is the
rate at which the link drains a backlog of mirror frames, measured through
a proxy that paces the source's bytes: not the rate at which frames are
queued, which is memory speed whatever the link."""
from __future__ import annotations

import os

import pytest

from dtcore.model.repset import ReplicationSet
from dtcore.source.mirror import FULL
from dtcore.source.mirror.options import MirrorOptions
from dtcore.source.mirror.run import Mirror
from loopback_proxy import CuttingProxy

pytestmark = pytest.mark.timeout(60)
SECRET = "link-rate-secret"
RATE = 8 << 20  # bytes a second, source to target


def test_a_mirror_behind_a_slow_link_plans_with_that_links_rate(engine, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(24 << 20))  # random: compression cannot shrink it
    target = engine.start_target(tmp_path / "tgt", port=0)
    proxy = CuttingProxy(target.port, rate=RATE)
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
