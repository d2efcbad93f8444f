import os

import pytest
from hypothesis import HealthCheck, settings

# A quick profile for the default run, a thorough one for the slow suite
# (HYPOTHESIS_PROFILE=thorough, set by `make test-slow`).
settings.register_profile("default", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

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
