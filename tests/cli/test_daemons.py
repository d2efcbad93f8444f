"""The services people run use the control plane, from DT.conf: the engine
log in LogDir, statistic.sts (StatsLoggingOn), and live statistics on
StatsPort that the real dtstat reads; an embedded Engine does the same
unless told otherwise."""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from commandline import EXE, env, free_port, run
from dtcore.control.statserver import StatsClient
from dtcore.control.stsfile import read
from dtcore.engine import Engine

pytestmark = pytest.mark.timeout(120)


def test_the_target_service_logs_keeps_statistics_and_serves_them_live(tmp_path, src):
    logs, stats_port = tmp_path / "tlogs", free_port()
    conf = tmp_path / "DT.conf"
    conf.write_text(f"LogDir={logs}\nStatsLoggingOn=1\nStatsWriteInterval=1\n"
                    f"StatsPort={stats_port}\n")
    environ = {k: v for k, v in env(tmp_path).items() if k not in ("DTCORE_LOGDIR", "DTCORE_STATSPORT")}
    with open(tmp_path / "target.err", "wb") as err:
        proc = subprocess.Popen([*EXE, "target", "--root", str(tmp_path / "tgt"), "--create",
                                 "--port", "0", "--host", "127.0.0.1", "--conf", str(conf)],
                                env=environ, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        port = int(proc.stdout.readline().rsplit(":", 1)[1])
        assert run(["mirror", str(src), f"127.0.0.1:{port}:job", "--full"],
                   tmp_path).returncode == 0
        live = subprocess.run([sys.executable, "-m", "dtcore.cli.dtstat", "-server", "127.0.0.1",
                               str(stats_port), "-count", "1"], capture_output=True, text=True,
                              timeout=60)
        assert live.returncode == 0, live.stderr
        assert "Logins : 1" in live.stdout and "Ops Received" in live.stdout, live.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert proc.returncode == 0
    lines = (logs / "dtlog1.dtl").read_text().splitlines()
    assert any("\t4001\t" in line for line in lines)  # target service started
    assert any("\t4004\t" in line for line in lines)  # ... and stopped
    snaps = list(read(logs / "statistic.sts"))
    assert snaps and snaps[-1].value("server", "Logins") == 1


def test_an_embedded_engine_logs_and_serves_statistics_unless_told_not_to(tmp_path):
    port = free_port()
    with Engine(secret="s", LogDir=str(tmp_path / "a"), StatsPort=port) as engine:
        engine.start_target(tmp_path / "root", port=0)
        client = StatsClient("127.0.0.1", port)
        try:
            assert client.snapshot().value("server", "TargetState") is not None
        finally:
            client.close()
    assert "\t4001\t" in (tmp_path / "a" / "dtlog1.dtl").read_text()
    with Engine(secret="s", LogDir=str(tmp_path / "b"), StatsPort=port, log=False,
                statistics=False) as engine:
        engine.start_target(tmp_path / "root", port=0)
        assert engine.stats_server is None
    assert not (tmp_path / "b").exists()
