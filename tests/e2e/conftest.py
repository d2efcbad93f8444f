"""The loopback engine tests: an engine with its log in the test's folder,
proving the test module's SECRET; its targets listen on 127.0.0.1 on a free
port."""
import pytest

from dtcore.engine import Engine


@pytest.fixture
def engine(request, tmp_path):
    with Engine(secret=request.module.SECRET, LogDir=str(tmp_path / "logs")) as e:
        yield e


@pytest.fixture
def pair(engine, tmp_path):
    """(engine, repset, conn, source folder, target copy, target): an empty
    source connected to a target on loopback, target path "data"."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    target = engine.start_target(dst, port=0)
    repset = engine.replication_set(src)
    conn = engine.connect(repset, port=target.port, target_path="data")
    return engine, repset, conn, src, dst / "data", target
