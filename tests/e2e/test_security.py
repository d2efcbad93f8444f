"""A hostile client against a real target: after a valid handshake (or none)
it sends path escapes, oversized frames, unknown ops, garbage and a wrong
secret.  Each is refused with its documented code and an event, that
connection closes, nothing appears outside the root, and the target goes on
serving an honest source."""
from __future__ import annotations

import json
import os
import socket
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtcore.apply.safe_paths import SafeRoot
from dtcore.engine import Engine
from dtcore.errors import (
    AccessDeniedError,
    DataOverloadError,
    DTError,
    IncompatibleVersionError,
    InvalidParameterError,
    InvalidPathError,
    StreamError,
)
from dtcore.model.compression import Compressor
from dtcore.model.ops import Op, OpKind, encode_patch, pack_batch
from dtcore.model.paths import check_path
from dtcore.model.repset import ReplicationSet
from dtcore.protocol.frames import FLAG_LZ4, HEADER, HELLO, MAGIC, OPS, Channel, refuse_error
from dtcore.protocol.handshake import client_handshake
from dtcore.protocol.link import Link
from dtcore.protocol.messages import SignatureRequest
from dtcore.source.mirror import FULL

pytestmark = pytest.mark.timeout(60)
SECRET = "hostile-test-secret"


@pytest.fixture
def served(engine, tmp_path, seen_events):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = engine.start_target(tmp_path / "root", port=0)
    return engine, target, tmp_path / "root", outside


def hostile(target, secret=SECRET, path="job") -> Channel:
    sock = socket.create_connection(("127.0.0.1", target.port), timeout=10)
    ch = Channel(sock)
    client_handshake(ch, secret.encode(), {"target_path": path})
    return ch


def refusal(ch: Channel) -> BaseException:
    """The error the target closed this connection with."""
    with pytest.raises(Exception) as info:
        while True:
            ftype, _, _, body = ch.recv()
            if ftype == 5:  # REFUSE
                from dtcore.protocol.frames import refuse_error
                raise refuse_error(body)
    return info.value


def still_serves(engine, target, tmp_path, name):
    src = tmp_path / f"honest-{name}"
    src.mkdir()
    (src / "ok.txt").write_bytes(b"still here")
    repset = ReplicationSet(src)
    conn = engine.connect(repset, "127.0.0.1", target.port, f"honest-{name}")
    engine.mirror(conn, repset, FULL)
    assert open(f"{target.root.path}/honest-{name}/ok.txt", "rb").read() == b"still here"


def nothing_outside(root, outside):
    assert list(outside.iterdir()) == []
    assert not (root.parent / "escaped").exists()


@pytest.mark.parametrize("path", [b"../escaped", b"/tmp/escaped", b"a/../../escaped", b"./x",
                                  b"a//b", b".dtcore/state.json", b"x" * 300])
def test_path_escapes_are_refused(served, tmp_path, seen_events, path):
    engine, target, root, outside = served
    ch = hostile(target, path="")
    ch.send(OPS, pack_batch([Op(OpKind.CREATE, 1, 1, path, 0o644),
                             Op(OpKind.WRITE, 1, 2, path, 0, b"owned")]), seq=1)
    err = refusal(ch)
    assert isinstance(err, InvalidPathError) and err.code == -225
    assert 6002 in [e.id for e in seen_events]
    nothing_outside(root, outside)
    still_serves(engine, target, tmp_path, "p")


def test_symlink_pointing_out_is_not_followed(served, tmp_path):
    engine, target, root, outside = served
    (root / "job").mkdir(parents=True)
    os.symlink(outside, root / "job" / "door")
    ch = hostile(target)
    ch.send(OPS, pack_batch([Op(OpKind.WRITE, 1, 1, b"door/evil", 0, b"owned")]), seq=1)
    assert isinstance(refusal(ch), InvalidPathError)
    # a rooted symlink op cannot smuggle '..' either
    ch = hostile(target)
    ch.send(OPS, pack_batch([Op(OpKind.SYMLINK, 1, 1, b"l", 1, b"../../outside")]), seq=1)
    assert isinstance(refusal(ch), InvalidPathError)
    nothing_outside(root, outside)
    still_serves(engine, target, tmp_path, "s")


def test_symlink_swapped_in_during_writes_cannot_escape(tmp_path):
    """Race a thread that keeps replacing a folder with a symlink to the
    outside against writes through that folder: no byte lands outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    base = tmp_path / "root"
    (base / "d").mkdir(parents=True)
    stop = threading.Event()

    def swapper():
        while not stop.is_set():
            try:
                os.rename(base / "d", base / "d.real")
                os.symlink(outside, base / "d")
                os.unlink(base / "d")
                os.rename(base / "d.real", base / "d")
            except OSError:
                pass

    t = threading.Thread(target=swapper)
    t.start()
    try:
        for i in range(2000):
            with SafeRoot(base) as root:
                try:
                    fd = root.open(b"d/f%d" % i, os.O_WRONLY | os.O_CREAT, 0o600)
                    os.close(fd)
                except (OSError, InvalidPathError):
                    pass
    finally:
        stop.set()
        t.join()
    assert list(outside.iterdir()) == []


def test_check_path_rules():
    assert check_path(b"a/b/c") == (b"a", b"b", b"c")
    for bad in [b"", b"/a", b"a/", b"a/./b", b"..", b"a\0b", b"a" * 256, b"a/" * 2049]:
        with pytest.raises(InvalidPathError):
            check_path(bad)


def test_oversized_frame_is_refused(served, tmp_path):
    engine, target, root, outside = served
    ch = hostile(target)
    ch.sock.sendall(HEADER.pack(MAGIC, OPS, 0, 0, ch.max_frame + 1, 0, 1))
    err = refusal(ch)
    assert isinstance(err, DataOverloadError) and err.code == -231
    still_serves(engine, target, tmp_path, "o")


def test_unknown_op_and_garbage_are_refused(served, tmp_path):
    engine, target, root, outside = served
    batch = bytearray(pack_batch([Op(OpKind.CREATE, 1, 1, b"x", 0o644)]))
    batch[16 + 4] = 0x63  # an op kind nobody defined
    ch = hostile(target)
    ch.send(OPS, bytes(batch), seq=1)
    assert isinstance(refusal(ch), StreamError)
    ch = hostile(target)
    ch.sock.sendall(os.urandom(4096))
    assert isinstance(refusal(ch), StreamError)
    # garbage before any handshake
    sock = socket.create_connection(("127.0.0.1", target.port), timeout=10)
    sock.sendall(b"GET / HTTP/1.0\r\n\r\n" * 4)
    assert isinstance(refusal(Channel(sock)), StreamError)
    assert not (root / "job" / "x").exists()
    still_serves(engine, target, tmp_path, "g")


def test_bad_crc_is_refused_with_event(served, tmp_path, seen_events):
    engine, target, root, outside = served
    ch = hostile(target)
    ch.crc = True
    parts = ch.frame(OPS, pack_batch([Op(OpKind.CREATE, 1, 1, b"crc", 0o644)]), seq=1)
    body = bytearray(b"".join(parts[1:]))
    body[-9] ^= 1
    ch.sock.sendall(parts[0] + bytes(body))
    assert isinstance(refusal(ch), StreamError)
    assert 4071 in [e.id for e in seen_events]
    assert not (root / "job" / "crc").exists()
    still_serves(engine, target, tmp_path, "c")


def test_wrong_secret_and_version(served, tmp_path):
    engine, target, root, outside = served
    with pytest.raises(AccessDeniedError):
        hostile(target, secret="guess")
    sock = socket.create_connection(("127.0.0.1", target.port), timeout=10)
    ch = Channel(sock)
    ch.send_json(HELLO, {"version": 99, "min_version": 99, "nonce": "00" * 32})
    with pytest.raises(IncompatibleVersionError):
        ch.recv_json(2)
    # a proof replayed from another session does not work: each challenge is fresh
    assert engine.statistics().value("server", "FailedLogins") == 1
    still_serves(engine, target, tmp_path, "v")


def test_hostile_request_fields(served, tmp_path):
    engine, target, root, outside = served
    src = tmp_path / "src"
    src.mkdir()
    conn = engine.connect(ReplicationSet(src), "127.0.0.1", target.port, "job")
    for params in [dict(method="read", path=b"../../etc/passwd".hex(), offset=0, length=10),
                   dict(method="sums", path=b"x".hex(), first=-1, count=1, block=4096),
                   dict(method="read", path="zz", offset=0, length=1),
                   dict(method="root_attributes", attrs="00ff"),
                   dict(method="nope")]:
        with pytest.raises((InvalidPathError, StreamError)):
            conn.link.call(params.pop("method"), params)
    assert conn.alive


# -- nothing before authentication costs the target much or lasts long -------
def _gone(target, seconds=5.0):
    """Wait until the target holds no session; True if it got there."""
    deadline = time.monotonic() + seconds
    while target.sessions and time.monotonic() < deadline:
        time.sleep(0.02)
    return target.sessions == 0


def _closed(sock, seconds=5.0):
    """Whether the target closes ``sock`` within ``seconds``."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def _said(seen_events, text, seconds=5.0):
    """Whether an event whose detail holds ``text`` arrives within ``seconds``
    (the target's threads emit them while the test goes on)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(text in str(e.fields.get("detail", "")) for e in list(seen_events)):
            return True
        time.sleep(0.02)
    return False


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_nested_json_hello_is_refused_and_forgotten(served, tmp_path):
    engine, target, root, outside = served
    # within the handshake's size limit, but nested far deeper than any HELLO
    for body in (b"[" * 6000 + b"]" * 6000, b'{"a":' * 1500 + b"1" + b"}" * 1500):
        sock = socket.create_connection(("127.0.0.1", target.port), timeout=10)
        ch = Channel(sock)
        ch.send_parts([ch.header(HELLO, 0, [body]), body])
        assert isinstance(refusal(ch), StreamError)
    assert _gone(target)
    still_serves(engine, target, tmp_path, "n")


def test_compressed_hello_is_refused_before_expanding(served, tmp_path):
    engine, target, root, outside = served
    sock = socket.create_connection(("127.0.0.1", target.port), timeout=10)
    ch = Channel(sock, compressor=Compressor(min_size=0))
    # under 16 KiB on the wire, 3 MiB once expanded
    payload = ch.compressor.compress(b'{"version": 1, "pad": "' + b"x" * (3 << 20) + b'"}')
    assert payload.compressed and len(payload.header) + len(payload.body) < 16 << 10
    parts = [payload.header, payload.body]
    ch.send_parts([ch.header(HELLO, FLAG_LZ4, parts), *parts])
    err = refusal(ch)
    assert isinstance(err, StreamError) and "compressed" in str(err)
    assert _gone(target)


def test_idle_connections_cost_little_and_are_bounded(served, tmp_path, seen_events):
    engine, target, root, outside = served
    before = _rss()
    socks = [socket.create_connection(("127.0.0.1", target.port), timeout=10)
             for _ in range(target.max_handshakes)]
    deadline = time.monotonic() + 5
    while target.sessions < len(socks) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert target.sessions == len(socks)
    # no queue ring, no counters, no request threads before the secret is proved
    assert _rss() - before < 16 * 2**20, (_rss() - before) / 2**20
    extra = socket.create_connection(("127.0.0.1", target.port), timeout=10)
    assert _closed(extra, 5)  # over the budget for handshakes: closed at once
    assert _said(seen_events, "handshakes are already under way")
    for s in socks:
        s.close()
    assert _gone(target)
    still_serves(engine, target, tmp_path, "i")


def test_authenticated_idle_sessions_cost_no_queue_ring(served, tmp_path):
    """The target's queue ring (tens of MB, faulted in) comes with the first
    ops: sources that connect and only ask, or wait, do not pay for it."""
    engine, target, root, outside = served
    before = _rss()
    chans = [hostile(target, path=f"idle-{i}") for i in range(4)]  # MaxConnections is 5
    deadline = time.monotonic() + 5
    while sum(s.authenticated for s in target._sessions) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _rss() - before < 16 * 2**20, (_rss() - before) / 2**20
    for ch in chans:
        ch.close()
    assert _gone(target)


def test_a_trickled_handshake_meets_one_deadline(engine, tmp_path, seen_events):
    target = engine.start_target(tmp_path / "root", port=0, handshake_timeout=1.0)
    sock = socket.create_connection(("127.0.0.1", target.port), timeout=10)
    hello = HEADER.pack(MAGIC, HELLO, 0, 0, 100, 0, 0)
    started = time.monotonic()
    sock.settimeout(0.25)
    cut = False
    for byte in hello + b"{" * 20:  # one byte every 0.25 s: each read on its own is quick
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(1) == b"":
                cut = True
                break
        except socket.timeout:
            continue
        except OSError:
            cut = True
            break
    assert cut and time.monotonic() - started < 3
    assert _said(seen_events, "did not finish within 1 s")
    assert _gone(target)


def test_max_connections_is_honoured(tmp_path):
    with Engine(secret=SECRET, MaxConnections=2) as engine:
        target = engine.start_target(tmp_path / "root", port=0)
        src = tmp_path / "s"
        src.mkdir()
        repset = ReplicationSet(src)
        first = engine.connect(repset, "127.0.0.1", target.port, "a")
        engine.connect(repset, "127.0.0.1", target.port, "b")
        with pytest.raises(DataOverloadError, match="MaxConnections=2"):
            engine.connect(repset, "127.0.0.1", target.port, "c")
        first.close()
        deadline = time.monotonic() + 5
        while target.sessions > 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        engine.connect(repset, "127.0.0.1", target.port, "c")  # room again


def test_one_broken_connection_leaves_the_accept_loop_serving(served, tmp_path, monkeypatch):
    """Whatever fails in one connection (here: creating its session, then its
    handshake with an error nobody expects) ends that connection only."""
    engine, target, root, outside = served
    from dtcore.target import service, session

    real = service.Session
    calls = {"n": 0}

    def first_fails(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise MemoryError("no memory for this one")
        return real(*args, **kw)

    monkeypatch.setattr(service, "Session", first_fails)
    sock = socket.create_connection(("127.0.0.1", target.port), timeout=10)
    assert _closed(sock)
    monkeypatch.setattr(session, "server_handshake",
                        lambda *a: (_ for _ in ()).throw(RuntimeError("a bug")))
    sock = socket.create_connection(("127.0.0.1", target.port), timeout=10)
    assert _closed(sock)
    assert _gone(target)
    monkeypatch.undo()
    still_serves(engine, target, tmp_path, "b")


# -- an authenticated peer cannot make the target do much more than it asked --
def test_signature_of_tiny_blocks_is_refused(served, tmp_path):
    engine, target, root, outside = served
    (root / "job").mkdir(parents=True)
    (root / "job" / "big").write_bytes(os.urandom(2 << 20))
    src = tmp_path / "src"
    src.mkdir()
    conn = engine.connect(ReplicationSet(src), "127.0.0.1", target.port, "job")
    with pytest.raises(InvalidParameterError, match="over the limit"):
        conn.call(SignatureRequest(b"big", 1))
    fields, data = conn.call(SignatureRequest(b"big", 4096))
    assert fields["blocks"] == 512 and len(data) == 16 * 512
    assert conn.alive


def test_patch_cannot_build_more_than_it_carries(served, tmp_path):
    engine, target, root, outside = served
    ch = hostile(target)
    old = os.urandom(4096)
    ch.send(OPS, pack_batch([Op(OpKind.CREATE, 1, 1, b"f", 0o644),
                             Op(OpKind.WRITE, 1, 2, b"f", 0, old)]), seq=1)
    # 3 KB of instructions copying the old 4 KiB over and over: a 200 MB file
    n = 190
    insns = np.array([[0, 4096]] * n, dtype=np.int64)
    ch.send(OPS, pack_batch([Op(OpKind.PATCH, 1, 3, b"f", 4096 * n,
                                encode_patch(insns, 0, b""))]), seq=2)
    err = refusal(ch)
    assert isinstance(err, StreamError) and "would build" in str(err)
    assert (root / "job" / "f").read_bytes() == old
    assert [p.name for p in (root / "job").iterdir()] == ["f"]  # no temporary file left


@pytest.mark.parametrize("target_moves", [False, True])
def test_orphans_go_where_the_target_says(tmp_path, target_moves):
    moved_to = tmp_path / "moved"
    with Engine(secret=SECRET, MoveOrphanedFiles=int(target_moves),
                MoveOrphansDir=str(moved_to)) as engine:
        target = engine.start_target(tmp_path / "root", port=0)
        (tmp_path / "root" / "job").mkdir(parents=True)
        (tmp_path / "root" / "job" / "orphan").write_bytes(b"o")
        ch = hostile(target)
        link = Link(ch, "hostile").start()
        # the peer asks for a move; only the target's own settings decide
        fields, _ = link.call("orphans", {"paths": [b"orphan".hex()], "move": True})
        assert fields["files"] == 1 and fields["moved"] is target_moves
        assert not (tmp_path / "root" / "job" / "orphan").exists()
        assert (moved_to / "orphan").exists() is target_moves
        link.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(
    st.binary(max_size=2000),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                 lambda kids: st.lists(kids, max_size=5) | st.dictionaries(
                     st.sampled_from(["version", "min_version", "nonce", "max_frame",
                                      "target_path", "source", "compress", "x"]), kids,
                     max_size=6), max_leaves=30).map(lambda v: json.dumps(v).encode())))
def test_any_hello_ends_in_a_refusal_and_the_session_goes(served, body):
    """Random HELLO bodies (bytes, or JSON of any shape): the target answers
    each with a documented error or a close, forgets the session, and is
    still there for the next one."""
    engine, target, root, outside = served
    sock = socket.create_connection(("127.0.0.1", target.port), timeout=10)
    ch = Channel(sock)
    ch.send_parts([ch.header(HELLO, 0, [body]), body])
    try:
        ftype, _, _, reply = ch.recv(1 << 16)
    except DTError:
        ftype = None  # closed without a word: also an answer
    if ftype == 5:  # REFUSE
        assert isinstance(refuse_error(reply), DTError)
    else:
        assert ftype in (None, 2)  # or a CHALLENGE: then it waits for a proof
    sock.close()
    assert _gone(target)
