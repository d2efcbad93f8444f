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
    out = run(["profile", "--json", str(src), f"127.0.0.1:{target}:job"], tmp_path)
    doc = json.loads(out.stdout)
    with open(profile_module.SCHEMA_FILE) as f:
        jsonschema.validate(doc, json.load(f))
    assert doc["choices"]["block"]["files"] == 1
