"""The replication service view in a real browser: headless Chromium loads
the page the engine serves, the page renders, and the numbers it shows are
the ones /api/status gives."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request

import pytest

from dtcore.engine import Engine
from dtcore.model.repset import ReplicationSet

pytestmark = pytest.mark.timeout(120)
SECRET = "service-view-secret"


def _browser():
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.geteuid() == 0:  # `make test` installs it: its absence is a failure
            pytest.fail("chromium is missing; `make test` installs Debian's chromium package")
        pytest.skip("chromium is not installed")
    return found


def _chromium(*args):
    return subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu",
                           "--virtual-time-budget=5000", *args], capture_output=True,
                          timeout=90)


@pytest.fixture
def serving(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(150_000))
    with Engine(secret=SECRET, LogDir=str(tmp_path / "logs"), statistics=False) as engine:
        target = engine.start_target(tmp_path / "dst", port=0)
        repset = ReplicationSet(src)
        conn = engine.connect(repset, port=target.port, target_path="data")
        rep = engine.replicate(conn, repset, directory=str(tmp_path / "q"), mirror="full")
        assert rep.drain(30)
        yield engine, engine.serve_http()
        rep.close(5)


def test_the_page_renders_the_numbers_of_the_api(serving, tmp_path):
    engine, port = serving
    url = f"http://127.0.0.1:{port}/"
    dom = _chromium("--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout.decode()
    with urllib.request.urlopen(url + "api/status", timeout=10) as r:
        doc = json.loads(r.read())
    c = doc["connections"][0]
    row = re.search(r'<table id="connections-table">.*?</tr><tr>(.*?)</tr>', html, re.S)
    assert row, html[:3000]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
    assert cells[:7] == [str(c["id"]), c["target"], "/data", "OK", "started", "Idle",
                         c["replication"]]
    assert cells[9] == f"{c['bytes_sent']:,}" and cells[10] == f"{c['bytes_on_wire']:,}"
    assert f"<td>{os.fsdecode(engine.targets[0].root.path)}</td>" in html and "/data" in html
    assert 'id="rpo-1"' in html  # the chart of the recovery point
    shot = tmp_path / "view.png"
    done = _chromium("--window-size=1300,800", f"--screenshot={shot}", url)
    assert done.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
