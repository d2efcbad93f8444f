"""Pausing a connection's transmission, from the API and from the HTTP
server with its token: nothing leaves while paused, ops queue, the status
says why, and everything arrives after the resume."""
from __future__ import annotations

import json
import socket
import struct
import time
import urllib.error
import urllib.request

import pytest

from dtcore.control.stats import ConState
from dtcore.model.ops import Op, OpKind

pytestmark = pytest.mark.timeout(120)
SECRET = "pause-test-secret"


def _post(port, path, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_paused_connection_sends_nothing_until_resumed_over_http(pair, tmp_path):
    engine, repset, conn, src, dst, _ = pair
    rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"))
    port = engine.serve_http(token=SECRET)
    assert _post(port, f"/api/connections/{conn.id}/pause")[0] == 401
    assert _post(port, f"/api/connections/{conn.id}/pause", "wrong")[0] == 401
    assert _post(port, "/api/connections/99/pause", SECRET)[0] == 404
    code, row = _post(port, f"/api/connections/{conn.id}/pause", SECRET)
    assert code == 200 and row["transmit"] == "paused" and "paused by the user" in row["why_idle"]
    assert engine.statistics().value("connection", "conState") == ConState.PAUSED
    sent = conn.counters["conOpsTx"]
    with rep.open("held.txt", "w") as f:
        f.write("queued while paused")
    rep.flush()
    time.sleep(0.5)
    assert not (dst / "held.txt").exists() and conn.counters["conOpsTx"] == sent
    assert engine.statistics().value("connection", "conOpsInRepQueue") > 0
    code, row = _post(port, f"/api/connections/{conn.id}/resume", SECRET)
    assert code == 200 and row["transmit"] == "started" and row["why_idle"] is None
    assert rep.drain(30)
    assert (dst / "held.txt").read_text() == "queued while paused"
    assert engine.statistics().value("connection", "conState") == ConState.ACTIVE
    events = {event_id for (event_id, _), _ in engine.events.items()}
    assert {4014, 4015} <= events


def test_without_a_token_the_http_api_is_read_only(pair):
    engine, repset, conn, *_ = pair
    port = engine.serve_http()
    code, doc = _post(port, f"/api/connections/{conn.id}/pause", SECRET)
    assert code == 403 and "read-only" in doc["error"]
    assert not conn.tx.held
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=10) as reply:
        assert json.loads(reply.read())["connections"][0]["transmit"] == "started"


def test_a_pause_outlives_a_reconnect(pair, tmp_path):
    engine, repset, conn, src, dst, target = pair
    rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"))
    conn.pause()
    with rep.open("later.txt", "w") as f:
        f.write("after the cut")
    rep.flush()
    for session in list(target._sessions):  # the target's end resets the link
        sock = session.link.ch.sock
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    deadline = time.monotonic() + 30
    while engine.stats.server["autoReConnects"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    while not conn.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    assert conn.alive and conn.tx.held
    assert engine.statistics().value("connection", "conState") == ConState.PAUSED
    time.sleep(0.3)
    assert not (dst / "later.txt").exists()
    conn.resume()
    assert rep.drain(30) and (dst / "later.txt").read_text() == "after the cut"


def test_when_acked_waits_for_every_frame_handed_over_before_it(pair):
    """What a mirror's settle relies on: the callback runs once the target
    has acknowledged the frames queued before it was asked for, not sooner,
    and at once when nothing waits."""
    engine, repset, conn, src, dst, target = pair
    now: list[str] = []
    conn.tx.when_acked(lambda: now.append("idle"))
    assert now == ["idle"]
    conn.pause()  # the frames stay queued on the source
    conn.send_ops([Op(OpKind.MKDIR, 0, 1, b"first", 0o755)])
    conn.send_ops([Op(OpKind.MKDIR, 0, 2, b"second", 0o755)])
    conn.tx.when_acked(lambda: now.append("acked"))
    time.sleep(0.3)
    assert now == ["idle"] and not (dst / "second").exists()
    conn.resume()
    conn.flush(30)
    assert now == ["idle", "acked"] and (dst / "second").is_dir()
