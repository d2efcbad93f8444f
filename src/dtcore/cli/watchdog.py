"""``--timeout``: end a command that has made no progress for a while."""
from __future__ import annotations

import signal
import threading
import time
from typing import Any, Callable


class Stalled(BaseException):
    """Nothing moved for the command's --timeout.  Like KeyboardInterrupt it
    is no Exception, so that no handler on the way mistakes it for a network
    or file error."""


class Watchdog:
    """Watches ``probe`` (anything that changes while work moves: counters,
    a mirror's position) and, once it has not changed for ``seconds``,
    raises :class:`Stalled` in the main thread, the way Ctrl-C interrupts a
    wait there."""

    def __init__(self, seconds: float, probe: Callable[[], Any]) -> None:
        self.seconds = seconds
        self.probe = probe
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="dtcore-timeout", daemon=True)
        self._previous = signal.signal(signal.SIGALRM, self._raise)

    def _raise(self, *_: object) -> None:
        raise Stalled(f"nothing moved for {self.seconds:g} s (--timeout)")

    def _watch(self) -> None:
        step = min(1.0, self.seconds / 4)
        key, since = self.probe(), time.monotonic()
        while not self._stop.wait(step):
            now_key = self.probe()
            if now_key != key:
                key, since = now_key, time.monotonic()
            elif time.monotonic() - since >= self.seconds:
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGALRM)
                return

    def __enter__(self) -> "Watchdog":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        signal.signal(signal.SIGALRM, self._previous)
