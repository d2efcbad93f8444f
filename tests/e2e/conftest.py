"""The loopback engine tests: an engine with its log in the test's folder,
proving the test module's SECRET; its targets listen on 127.0.0.1 on a free
port."""
import pytest

from dtcore.engine import Engine


@pytest.fixture
def engine(request, tmp_path):
    with Engine(secret=request.module.SECRET, LogDir=str(tmp_path / "logs")) as e:
        yield e
