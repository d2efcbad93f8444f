import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# A quick profile for the default run, a thorough one for the slow suite
# (HYPOTHESIS_PROFILE=thorough, set by `make test-slow`).
settings.register_profile("default", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True, scope="session")
def _engine_logs(tmp_path_factory):
    """Engines a test makes without a LogDir of their own log into the
    session's folder, not the machine's /var/log/DT."""
    folder = tmp_path_factory.mktemp("engine-logs")
    old = os.environ.get("DTCORE_LOGDIR")
    os.environ["DTCORE_LOGDIR"] = str(folder)
    yield folder
    if old is None:
        del os.environ["DTCORE_LOGDIR"]
    else:
        os.environ["DTCORE_LOGDIR"] = old

_SAMPLES = {
    "empty": b"",
    "one": b"\x01",
    "aligned": bytes(range(256)) * 64,
    "unaligned": bytes(range(251)) * 97,
    "random": os.urandom(200_003),
    "zeros": bytes(70_000),
    "repetitive": b"log line 42: all is well\n" * 5000,
}


@pytest.fixture(params=sorted(_SAMPLES))
def sample(request):
    return _SAMPLES[request.param]


@pytest.fixture(params=[bytes, bytearray, memoryview])
def as_buffer(request):
    return request.param


GUIDE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "000_10f5f5cb29de2182.txt"


@pytest.fixture
def guide_lines():
    """The reference guide's lines (the test is skipped without ../shared)."""
    if not GUIDE.exists():
        pytest.skip("the reference guide is not beside the project")
    return GUIDE.read_text().split("\n")


@pytest.fixture
def seen_events():
    """Every event emitted while the test runs."""
    from dtcore.control import events
    got = []
    unsubscribe = events.subscribe(got.append)
    yield got
    unsubscribe()


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs of the test's own (needs root; skipped otherwise)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)
