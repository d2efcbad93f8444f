"""Crash tests with real processes killed by SIGKILL: a source replicating
with QLogWriteThrough loses no op whose call had returned; a target killed
mid-stream gets what it had not acknowledged again, each batch applied once."""
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from dtcore.engine import Engine

SECRET = "replication-crash-secret"
RECORD = 16

SOURCE = textwrap.dedent("""
    import sys
    from dtcore.engine import Engine
    src, queue, port, first = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with Engine(secret=%r, QLogWriteThrough=1) as e:
        repset = e.replication_set(src)
        conn = e.connect(repset, port=port, target_path="data")
        rep = e.replicate(conn, repset, directory=queue)
        with rep.open("log", "r+b" if first else "wb", buffering=0) as f:
            i = first
            while True:
                f.seek(i * %d)
                f.write(i.to_bytes(8, "little") * 2)
                print(i, flush=True)  # the call returned: the op is durable
                i += 1
""" % (SECRET, RECORD))

TARGET = textwrap.dedent("""
    import sys, threading
    from dtcore.engine import Engine
    e = Engine(secret=%r)
    e.start_target(sys.argv[1], port=int(sys.argv[2]))
    print("up", flush=True)
    threading.Event().wait()
""" % SECRET)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def records(path):
    data = path.read_bytes() if path.exists() else b""
    return {int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data) - RECORD + 1, RECORD)
            if data[i:i + 8] == data[i + 8:i + 16]}


def kill_source_trials(tmp_path, trials):
    src, dst, queue = tmp_path / "src", tmp_path / "dst", str(tmp_path / "q")
    src.mkdir()
    rng = random.Random(7)
    with Engine(secret=SECRET) as engine:
        target = engine.start_target(dst, port=0)
        returned = -1
        for trial in range(trials):
            child = subprocess.Popen([sys.executable, "-c", SOURCE, str(src), queue,
                                      str(target.port), str(returned + 1)],
                                     stdout=subprocess.PIPE, text=True)
            want = rng.randrange(5, 200)
            deadline = time.monotonic() + 60
            for n, line in enumerate(child.stdout):
                returned = int(line)
                if n >= want or time.monotonic() > deadline:
                    break
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            # what the killed source had printed before its last line may be
            # all it wrote; the restarted source sends the rest from its journal
        with Engine(secret=SECRET, QLogWriteThrough=1) as e2:
            repset = e2.replication_set(src)
            conn = e2.connect(repset, port=target.port, target_path="data")
            rep = e2.replicate(conn, repset, directory=queue)
            assert rep.drain(60)
            on_target = records(dst / "data" / "log")
    missing = set(range(returned + 1)) - on_target
    assert not missing, f"{len(missing)} acknowledged writes lost, first {min(missing)}"


def test_sigkill_of_the_source_loses_no_returned_op(tmp_path):
    kill_source_trials(tmp_path, 3)


@pytest.mark.slow
def test_sigkill_of_the_source_fifty_times(tmp_path):
    kill_source_trials(tmp_path, 50)


def test_sigkill_of_the_target_resends_and_converges(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    port = free_port()

    def start_target():
        p = subprocess.Popen([sys.executable, "-c", TARGET, str(dst), str(port)],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "up"
        return p

    target = start_target()
    try:
        with Engine(secret=SECRET) as engine:
            repset = engine.replication_set(src)
            conn = engine.connect(repset, port=port, target_path="data")
            rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"))
            with rep.open("log", "wb", buffering=0) as f:
                for i in range(3000):
                    f.write(i.to_bytes(8, "little") * 2)
                    if i in (1000, 2000):
                        target.send_signal(signal.SIGKILL)
                        target.wait(10)
                        target = start_target()
                        # carry on once the replication found the new target,
                        # so that the next kill cuts a live stream
                        deadline = time.monotonic() + 30
                        while engine.stats.server["autoReConnects"] < (1 if i == 1000 else 2):
                            assert time.monotonic() < deadline
                            time.sleep(0.01)
            assert rep.drain(60)
            assert records(dst / "data" / "log") == set(range(3000))
            assert (dst / "data" / "log").read_bytes() == (src / "log").read_bytes()
            assert engine.stats.server["autoReConnects"] >= 2
    finally:
        target.kill()
        target.wait(10)


BUFFERED = textwrap.dedent("""
    import sys
    from dtcore.engine import Engine
    src, queue, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with Engine(secret=%r, QLogWriteThrough=0) as e:
        repset = e.replication_set(src)
        conn = e.connect(repset, port=port, target_path="data")
        rep = e.replicate(conn, repset, directory=queue)
        with rep.open("log", "wb", buffering=0) as f:
            i = 0
            while True:
                f.write(i.to_bytes(8, "little") * 2)
                print(i, flush=True)
                i += 1
""" % SECRET)


def test_sigkill_of_a_buffered_source_remirrors_on_restart(tmp_path):
    """Without QLogWriteThrough a crash may lose accepted ops: the restarted
    replication marks the target Mirror Required and remirrors it."""
    src, dst, queue = tmp_path / "src", tmp_path / "dst", str(tmp_path / "q")
    src.mkdir()
    events = []
    with Engine(secret=SECRET) as engine:
        target = engine.start_target(dst, port=0)
        child = subprocess.Popen([sys.executable, "-c", BUFFERED, str(src), queue, str(target.port)],
                                 stdout=subprocess.PIPE, text=True)
        for n, _ in enumerate(child.stdout):
            if n >= 3000:
                break
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        with Engine(secret=SECRET) as e2:
            e2.subscribe(lambda e: events.append((e.id, e.message)))
            repset = e2.replication_set(src)
            conn = e2.connect(repset, port=target.port, target_path="data")
            rep = e2.replicate(conn, repset, directory=queue)
            assert rep.drain(60)
            assert (dst / "data" / "log").read_bytes() == (src / "log").read_bytes()
    assert any(i == 4065 and "may have lost ops" in text for i, text in events), events
