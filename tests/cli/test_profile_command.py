"""``dtcore profile`` as people run it: tables by default, nothing with -q,
the documented JSON with --json."""
from __future__ import annotations

import json
import os

import jsonschema
import pytest

from commandline import run
from dtcore.source.mirror import profile as profile_module

pytestmark = pytest.mark.timeout(120)


def test_dtcore_profile_prints_tables_and_json(tmp_path, target, src):
    (src / "big.bin").write_bytes(os.urandom(1 << 20))
    out = run(["mirror", "--full", str(src), f"127.0.0.1:{target}:job"], tmp_path)
    assert out.returncode == 0, out.stderr
    with open(src / "big.bin", "r+b") as f:
        f.write(b"changed")
    out = run(["profile", "-q", str(src), f"127.0.0.1:{target}:job"], tmp_path)
    assert out.returncode == 0 and out.stdout == ""
    out = run(["profile", str(src), f"127.0.0.1:{target}:job"], tmp_path)
    assert out.returncode == 0, out.stderr
    for words in ("what each file needs", "where the time goes", "other settings",
                  "nothing was sent", "big.bin"):
        assert words in out.stdout
    stats = tmp_path / "run.pstats"
    out = run(["profile", "--json", "--cpu-profile", str(stats), str(src),
               f"127.0.0.1:{target}:job"], tmp_path)
    doc = json.loads(out.stdout)
    import pstats
    functions = {name for _, _, name in pstats.Stats(str(stats)).stats}  # type: ignore[attr-defined]
    assert "_worker" in functions and "source_sums" in functions  # the workers' threads too
    assert doc["python_profile"]["file"] == str(stats) and doc["python_profile"]["top"]
    with open(profile_module.SCHEMA_FILE) as f:
        jsonschema.validate(doc, json.load(f))
    assert doc["choices"]["block"]["files"] == 1


def test_then_mirror_and_the_html_report_in_a_browser(tmp_path, target, src):
    import shutil
    import subprocess
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed")
    for i in range(3):
        (src / f"f{i}.bin").write_bytes(os.urandom(300_000))
    assert run(["mirror", "--full", str(src), f"127.0.0.1:{target}:job"], tmp_path).returncode == 0
    with open(src / "f1.bin", "r+b") as f:
        f.write(b"x" * 1000)
    page = tmp_path / "profile.html"
    out = run(["profile", "--then-mirror", "--json", "--html", str(page), str(src),
               f"127.0.0.1:{target}:job"], tmp_path)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    with open(profile_module.SCHEMA_FILE) as f:
        jsonschema.validate(doc, json.load(f))
    assert doc["ran"] is None and doc["mirror"]["ran"]["data_bytes"] == doc["data_bytes"]
    # the page as a browser renders it: its plots and the figures of the document
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=60).stdout
    for kind in ("choices", "stages", "changed", "versus"):
        assert f'data-plot="{kind}"' in dom and "<svg" in dom
    assert f"{doc['predicted']['data_bytes']:,}" in dom and "f1.bin" in dom
