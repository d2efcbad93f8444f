"""Embedders' type checkers see the API: the package ships py.typed and
stubs for its native modules, the stubs match the compiled modules
(mypy's stubtest), and mypy checks a program written against the API."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import dtcore

pytestmark = pytest.mark.timeout(240)
NATIVE = ["_checksum", "_delta", "_walk", "_ops", "_compress", "_fanotify", "_queue", "_smallfiles"]
HERE = Path(__file__).parent


def _mypy(tmp_path, source):
    program = tmp_path / "program.py"
    program.write_text(source)
    return subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent",
                           "--cache-dir", str(tmp_path / "cache"), str(program)],
                          capture_output=True, text=True, timeout=200, cwd=tmp_path)


def test_the_package_is_marked_typed_and_every_native_module_has_a_stub():
    package = Path(dtcore.__file__).parent
    assert (package / "py.typed").exists()
    assert sorted(p.stem for p in (package / "_native").glob("*.pyi")) == sorted(NATIVE)


def test_the_stubs_match_the_compiled_modules():
    out = subprocess.run([sys.executable, "-m", "mypy.stubtest", "--allowlist",
                          str(HERE / "stubtest-allowlist.txt"),
                          *[f"dtcore._native.{m}" for m in NATIVE]],
                         capture_output=True, text=True, timeout=200)
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_checks_a_program_against_the_api(tmp_path):
    good = _mypy(tmp_path, (
        "from dtcore import Engine, ReplicationSet, block_checksums\n"
        "from dtcore._native import _checksum\n\n"
        "def job(root: str, port: int) -> int:\n"
        "    with Engine(secret='s') as engine:\n"
        "        repset = ReplicationSet(root)\n"
        "        conn = engine.connect(repset, '127.0.0.1', port, 'data')\n"
        "        result = engine.mirror(conn, repset, 'full')\n"
        "        return result.files + len(block_checksums(b'x' * 8192, 4096))"
        " + _checksum.xxh3_64(b'abc')\n"))
    assert good.returncode == 0, good.stdout
    bad = _mypy(tmp_path, (
        "from dtcore import Engine\n"
        "from dtcore._native import _checksum\n\n"
        "text: str = _checksum.xxh3_64(b'abc')\n"
        "Engine(secret='s').mirror(1, 2)\n"))
    assert bad.returncode == 1
    assert 'expected "Connection"' in bad.stdout and "program.py:4: error" in bad.stdout
