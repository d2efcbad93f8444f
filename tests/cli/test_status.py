"""The service view of running daemons: ``/api/status`` and ``dtcore status``
show what a target serves and each connection's state, agree with the
metrics, and say in one line why a connection makes no progress."""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request

import pytest

from commandline import EXE, env, free_port, one_line, run, start_target

pytestmark = pytest.mark.timeout(120)


def _get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read()


def _replicate(src, port, tmp_path, http):
    environ = {**env(tmp_path), "DTCORE_QJOURNALDIR": str(tmp_path / "q"),
               "DTCORE_TGRETRYLOCKED": "1"}
    proc = subprocess.Popen([*EXE, "replicate", str(src), f"127.0.0.1:{port}:job",
                             "--http-port", str(http), "--interval", "0.2", "-q",
                             "--drain-timeout", "2"],
                            env=environ, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    assert "replicating" in proc.stdout.readline()
    return proc


def _until(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def test_status_of_a_replication_and_of_its_target(tmp_path, src):
    http_t, http_r = free_port(), free_port()
    with open(tmp_path / "target.log", "ab") as log:
        target = subprocess.Popen([*EXE, "target", "--root", str(tmp_path / "tgt"), "--create",
                                   "--port", "0", "--host", "127.0.0.1", "--http-port",
                                   str(http_t)], env=env(tmp_path), stdout=subprocess.PIPE,
                                  stderr=log, text=True)
    port = int(target.stdout.readline().rsplit(":", 1)[1])
    rep = _replicate(src, port, tmp_path, http_r)
    try:
        (src / "b.bin").write_bytes(os.urandom(200_000))
        doc = _until(lambda: (d := json.loads(_get(http_r, "/api/status")))["connections"][0][
            "bytes_sent"] > 200_000 and d)
        c = doc["connections"][0]
        assert (c["target_path"], c["connected"], c["target_state"]) == ("/job", True, "OK")
        assert c["replication"] in ("Ready", "Replicating") and c["why_idle"] is None
        assert doc["server"]["SourceState"] == 2  # a watched replication
        metrics = _get(http_r, "/metrics").decode()
        sent = re.search(r'^dtcore_connection_tx_bytes_total\{[^}]*\} (\S+)$', metrics, re.M)
        now = json.loads(_get(http_r, "/api/status"))["connections"][0]["bytes_sent"]
        assert float(sent.group(1)) <= now  # the same counter, read a moment apart
        out = run(["status", f"127.0.0.1:{http_r}"], tmp_path)
        assert out.returncode == 0 and "/job" in out.stdout and "connections" in out.stdout
        out = run(["status", f"127.0.0.1:{http_t}"], tmp_path)
        assert out.returncode == 0 and "/job" in out.stdout and "OK" in out.stdout
        out = run(["status", f"127.0.0.1:{http_t}", "--json"], tmp_path)  # one document
        assert json.loads(out.stdout)["targets"][0]["sources"][0]["data_state"] == "OK"
        # acting needs the shared secret; reading does not
        out = run(["status", f"127.0.0.1:{http_r}", "--pause", "1"], tmp_path, secret="wrong")
        assert out.returncode == 4 and "pause refused" in one_line(out)
        out = run(["status", f"127.0.0.1:{http_r}", "--pause", "1", "--json"], tmp_path)
        assert json.loads(out.stdout)["connections"][0]["transmit"] == "paused"
        (src / "held.bin").write_bytes(b"h" * 1000)
        time.sleep(1)
        assert not (tmp_path / "tgt" / "job" / "held.bin").exists()
        out = run(["status", f"127.0.0.1:{http_r}", "--resume", "1"], tmp_path)
        assert out.returncode == 0 and "nothing moves" not in out.stdout
        assert _until(lambda: (tmp_path / "tgt" / "job" / "held.bin").exists())
        target.terminate()  # the target goes away: the replication says why it idles
        target.wait(20)
        why = _until(lambda: json.loads(_get(http_r, "/api/status"))["connections"][0][
            "why_idle"])
        assert why == "disconnected; reconnecting"
        out = run(["status", f"127.0.0.1:{http_r}"], tmp_path)
        assert "nothing moves: disconnected; reconnecting" in out.stdout
    finally:
        for p in (rep, target):
            p.terminate()
            p.wait(30)


def test_a_target_write_failing_is_named_as_the_reason(tmp_path, src, small_disk):
    proc, port = start_target(small_disk, tmp_path, TGRetryLocked=1)
    http = free_port()
    rep = _replicate(src, port, tmp_path, http)
    try:
        (src / "big.bin").write_bytes(os.urandom(3 << 20))
        why = _until(lambda: json.loads(_get(http, "/api/status"))["connections"][0]["why_idle"])
        assert "big.bin" in why and "No space left on device" in why and "errno 28" in why
    finally:
        rep.terminate()
        rep.wait(30)
        proc.terminate()
        proc.wait(10)


def test_status_of_nothing_is_one_line(tmp_path):
    out = run(["status", f"127.0.0.1:{free_port()}"], tmp_path)
    assert out.returncode == 5 and "no engine answers" in out.stderr
