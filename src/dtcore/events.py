"""The one path every engine event takes: Python ``logging`` and the
subscribers (the engine log, SNMP traps and metrics exporters subscribe here).

Event IDs and levels are the guide's (chapters 6 and 7); the messages are
our own words."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger("dtcore")

ERROR, WARNING, INFORMATION = "Error", "Warning", "Information"
_LEVELS = {ERROR: logging.ERROR, WARNING: logging.WARNING, INFORMATION: logging.INFO}


@dataclass(frozen=True)
class Event:
    """One emitted event: the guide's ID, its level and our message."""

    id: int
    level: str
    message: str
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


def emit(event_id: int, level: str, message: str) -> Event:
    """Log an event and hand it to every subscriber.  A failing subscriber is
    logged, never allowed to stop the emitter."""
    event = Event(event_id, level, message)
    log.log(_LEVELS.get(level, logging.INFO), "%d %s", event_id, message)
    with _lock:
        subscribers = list(_subscribers)
    for callback in subscribers:
        try:
            callback(event)
        except Exception:  # a subscriber's bug must not break replication
            log.exception("event subscriber %r failed on event %d", callback, event_id)
    return event
