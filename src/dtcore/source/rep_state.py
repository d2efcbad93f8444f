"""What a replication keeps beside its journal so that a restarted source
carries on where it stopped: its source identity (how the target knows
which batches it applied already), the batch numbers handed out, and
whether the last run ended cleanly."""
from __future__ import annotations

import json
import os
import secrets
import threading

from dtcore._files import replace_whole

STATE_FILE = "replication.json"
# batch numbers are reserved this many at a time, so the state file is
# written once per reservation rather than once per batch
_RESERVE = 1 << 16


class ReplicationState:
    """The state file of one replication's queue folder.

    ``crashed`` says the previous run did not close cleanly (its process was
    killed, or the machine went down); ``buffered`` whether that run queued
    without QLogWriteThrough, in which case ops it had accepted may be lost."""

    def __init__(self, directory: str, write_through: bool) -> None:
        os.makedirs(directory, exist_ok=True)
        self.file = os.path.join(directory, STATE_FILE)
        self._lock = threading.Lock()
        try:
            with open(self.file, "rb") as f:
                saved = json.loads(f.read())
            self.source = str(saved["source"])
            self._reserved = int(saved["reserved"])
            self.crashed = bool(saved["running"])
            self.buffered = not saved["write_through"]
            self.fresh = False
        except (OSError, ValueError, KeyError, TypeError):
            self.source = secrets.token_hex(16)
            self._reserved = 0
            self.crashed = self.buffered = False
            self.fresh = True
        # numbers reserved by the last run may have been used: start past them
        self._next = self._reserved + 1
        self._write_through = write_through
        self._reserved = self._next + _RESERVE
        self._save(running=True)

    @property
    def may_have_lost(self) -> bool:
        """Whether ops accepted by the previous run may be gone."""
        return self.crashed and self.buffered

    def next_seq(self) -> int:
        """A new batch number, larger than every one handed out before,
        across restarts."""
        with self._lock:
            seq = self._next
            self._next += 1
            if self._next > self._reserved:
                self._reserved = self._next + _RESERVE
                self._save(running=True)
            return seq

    def last_seq(self) -> int:
        """The newest batch number handed out (by this run or an earlier one)."""
        with self._lock:
            return self._next - 1

    def restart_from(self, seq: int) -> None:
        """Hand out numbers above ``seq`` (what the target applied already)."""
        with self._lock:
            if seq >= self._next:
                self._next = seq + 1
                self._reserved = self._next + _RESERVE
                self._save(running=True)

    def _save(self, running: bool) -> None:
        replace_whole(self.file, json.dumps({
            "source": self.source, "reserved": self._reserved, "running": running,
            "write_through": self._write_through}).encode())

    def close(self) -> None:
        """Record a clean end."""
        with self._lock:
            self._save(running=False)
