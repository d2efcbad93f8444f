"""The one path every engine event takes: Python ``logging`` and the
subscribers (the engine log, later SNMP traps and metrics exporters).

IDs and levels are the guide's (chapters 6 and 7), listed with our message
templates in :mod:`dtcore.control.catalogue`."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from dtcore.control.catalogue import ERROR, EVENTS, INFORMATION, WARNING, render

__all__ = ["ERROR", "INFORMATION", "WARNING", "Event", "emit", "log", "subscribe"]

log = logging.getLogger("dtcore")
# a library says nothing unless its embedder configures logging
log.addHandler(logging.NullHandler())

_LEVELS = {ERROR: logging.ERROR, WARNING: logging.WARNING, INFORMATION: logging.INFO}


@dataclass(frozen=True)
class Event:
    """One emitted event: the guide's ID, its level, our message and the
    fields it was built from."""

    id: int
    level: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)


_subscribers: list[Callable[[Event], None]] = []
_lock = threading.Lock()


def subscribe(callback: Callable[[Event], None]) -> Callable[[], None]:
    """Call ``callback`` with every event from now on; returns the unsubscribe function."""
    with _lock:
        _subscribers.append(callback)

    def unsubscribe() -> None:
        with _lock:
            if callback in _subscribers:
                _subscribers.remove(callback)
    return unsubscribe


def emit(event_id: int, *, log_level: int | None = None, **fields: Any) -> Event:
    """Build event ``event_id`` from ``fields``, log it and hand it to every
    subscriber.  A failing subscriber is logged, never allowed to stop the
    emitter.  An ID outside the catalogue is a programming error.
    ``log_level`` is the Python logging level when it is not the guide's
    (a state change the guide files as a warning may be good news)."""
    kind = EVENTS.get(event_id)
    if kind is None:
        raise ValueError(f"event {event_id} is not in the catalogue")
    event = Event(event_id, kind.level, render(event_id, fields), fields)
    log.log(_LEVELS[kind.level] if log_level is None else log_level, "%d %s", event_id,
            event.message)
    with _lock:
        subscribers = list(_subscribers)
    for callback in subscribers:
        try:
            callback(event)
        except Exception:  # a subscriber's bug must not break replication
            log.exception("event subscriber %r failed on event %d", callback, event_id)
    return event


class EventCounts:
    """How many of each event (by ID and level) were emitted since it was made."""

    def __init__(self) -> None:
        self._counts: dict[tuple[int, str], int] = {}
        self._lock = threading.Lock()
        self._unsubscribe = subscribe(self._count)

    def _count(self, event: Event) -> None:
        with self._lock:
            key = (event.id, event.level)
            self._counts[key] = self._counts.get(key, 0) + 1

    def items(self) -> list[tuple[tuple[int, str], int]]:
        with self._lock:
            return sorted(self._counts.items())

    def close(self) -> None:
        self._unsubscribe()
