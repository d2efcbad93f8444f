"""Prometheus metrics of a running engine, read by the real clients:
promtool lints the exposition, and a Prometheus server scrapes it and
answers queries on the figures a mirror moved."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request

import pytest

from commandline import free_port
from dtcore.control.metrics import metric_name
from dtcore.control.stats import SECTIONS
from dtcore.engine import Engine
from dtcore.model.repset import ReplicationSet

pytestmark = pytest.mark.timeout(120)
SECRET = "metrics-test-secret"


def _needs(tool):
    if shutil.which(tool) is None:
        if os.geteuid() == 0:  # `make test` installs it: its absence is a failure
            pytest.fail(f"{tool} is missing; `make test` installs Debian's prometheus package")
        pytest.skip(f"{tool} is not installed (Debian's prometheus package)")


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


@pytest.fixture
def mirrored(tmp_path):
    """An engine that has mirrored a folder to its own target, serving metrics."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(300_000))
    (src / "b.txt").write_bytes(b"text " * 20_000)
    with Engine(secret=SECRET, LogDir=str(tmp_path / "logs"), statistics=False) as engine:
        target = engine.start_target(tmp_path / "dst", port=0)
        repset = ReplicationSet(src)
        conn = engine.connect(repset, port=target.port, target_path="data")
        engine.mirror(conn, repset, "full")
        yield engine, engine.serve_http()


def test_every_statistic_has_its_own_name():
    names = [metric_name(s, f) for s, fields in SECTIONS.items() for f in fields if f[0] != "*"]
    assert len(set(names)) == len(names) == 60


def test_promtool_finds_the_exposition_well_formed(mirrored):
    _needs("promtool")
    _, port = mirrored
    body = _get(f"http://127.0.0.1:{port}/metrics")
    lint = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                          timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    text = body.decode()
    assert 'dtcore_connection_tx_bytes_total{connection="1",peer="127.0.0.1:' in text
    assert 'target_path="data"' in text and 'dtcore_events_total{id="4023"' in text


def test_a_prometheus_server_scrapes_the_engine(mirrored, tmp_path):
    _needs("prometheus")
    engine, port = mirrored
    web = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: dtcore\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n")
    server = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                               f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                               f"--web.listen-address=127.0.0.1:{web}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        query = (f"http://127.0.0.1:{web}/api/v1/query?query="
                 "dtcore_connection_tx_bytes_total%7Btarget_path%3D%22data%22%7D")
        deadline, result = time.monotonic() + 60, []
        while not result and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                result = json.loads(_get(query))["data"]["result"]
            except OSError:
                continue  # not listening yet
        assert result, "Prometheus never scraped a sample"
        sent = engine.statistics().value("connection", "conBytesTx")
        assert float(result[0]["value"][1]) == sent > 300_000
        up = json.loads(_get(f"http://127.0.0.1:{web}/api/v1/query?query=up"))
        assert up["data"]["result"][0]["value"][1] == "1"
    finally:
        server.terminate()
        server.wait(20)
