"""A hostile client against a real target: after a valid handshake (or none)
it sends path escapes, oversized frames, unknown ops, garbage and a wrong
secret.  Each is refused with its documented code and an event, that
connection closes, nothing appears outside the root, and the target goes on
serving an honest source."""
from __future__ import annotations

import os
import socket
import threading

import pytest

from dtcore.apply.safe_paths import SafeRoot
from dtcore.errors import (
    AccessDeniedError,
    DataOverloadError,
    IncompatibleVersionError,
    InvalidPathError,
    StreamError,
)
from dtcore.model.ops import Op, OpKind, pack_batch
from dtcore.model.paths import check_path
from dtcore.model.repset import ReplicationSet
from dtcore.protocol.frames import HEADER, HELLO, MAGIC, OPS, Channel
from dtcore.protocol.handshake import client_handshake
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
                   dict(method="nope")]:
        with pytest.raises((InvalidPathError, StreamError)):
            conn.link.call(params.pop("method"), params)
    assert conn.alive
