"""The target data state of each target path (OK, Mirroring, Mirror Required,
Restore Required), kept across restarts in the target's own state folder."""
from __future__ import annotations

import json
import logging
import os
import threading

from dtcore._files import replace_whole
from dtcore.control.events import emit
from dtcore.control.timers import StageTimers
from dtcore.errors import InvalidParameterError
from dtcore.protocol.messages import DATA_STATES, MIRROR_REQUIRED, MIRRORING, OK

STATE_DIR = b".dtcore"  # the target's own folder beneath its root, never replicated into


class DataStates:
    """The target data state of each target path, kept in ``state.json``."""

    def __init__(self, directory: str) -> None:
        self.file = os.path.join(directory, "state.json")
        self._lock = threading.Lock()
        self.writes = StageTimers()  # what saving a state costs (a profile predicts with it)
        try:
            with open(self.file) as f:
                loaded = json.load(f)
            self._states = {k: v for k, v in loaded.items() if v in DATA_STATES}
        except (OSError, ValueError):
            self._states = {}

    def get(self, path: str) -> str:
        with self._lock:
            return self._states.get(path, MIRROR_REQUIRED)

    def set(self, path: str, state: str, reason: str = "") -> None:
        if state not in DATA_STATES:
            raise InvalidParameterError(f"{state!r} is not a target data state")
        with self._lock:
            if self._states.get(path) == state:
                return
            self._states[path] = state
            try:
                with self.writes.timed("save"):
                    replace_whole(self.file, json.dumps(self._states).encode())
            except OSError as e:  # a full disk must not stop the target telling the state
                emit(6002, detail=f"the target data state of /{path} ({state}) cannot be saved: "
                                  f"{e.strerror or e}; it holds until the target restarts")
        # the guide's level is a warning; in Python's log a mirror starting
        # or ending well is routine
        emit(4065, conn=f"for target path /{path}", reason=f"now {state}" + (f" ({reason})" if reason else ""),
             log_level=logging.INFO if state in (OK, MIRRORING) else None)
