"""Stage timers: wall seconds, calls and bytes per named stage, added to
from any thread.  A profile reads them on both sides of a mirror (the
target's, keyed by request method, through a timers request)."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator


class Timing:
    """One timed call; set ``nbytes`` inside the block when the size is
    known only at the end."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes


class StageTimers:
    """(seconds, calls, bytes) per stage."""

    def __init__(self) -> None:
        self._stages: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float, nbytes: int = 0, calls: int = 1) -> None:
        with self._lock:
            s = self._stages.setdefault(name, [0.0, 0, 0])
            s[0] += seconds
            s[1] += calls
            s[2] += nbytes

    @contextmanager
    def timed(self, name: str, nbytes: int = 0) -> Iterator[Timing]:
        t = Timing(nbytes)
        start = time.perf_counter()
        try:
            yield t
        finally:
            self.add(name, time.perf_counter() - start, t.nbytes)

    def snapshot(self) -> dict[str, tuple[float, int, int]]:
        with self._lock:
            return {k: (v[0], int(v[1]), int(v[2])) for k, v in self._stages.items()}
