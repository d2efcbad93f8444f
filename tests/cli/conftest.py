from __future__ import annotations

import pytest

from commandline import start_target


@pytest.fixture
def target(tmp_path):
    """The port of a target serving tmp_path/tgt."""
    proc, port = start_target(tmp_path / "tgt", tmp_path)
    yield port
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def src(tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    (root / "a.txt").write_bytes(b"a" * 1000)
    return root
