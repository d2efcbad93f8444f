"""DTVerify.log: what a verify found different, one line per file.

Written in ``LogDir`` under ``VerifyLogName``; ``VerifyLogAppend`` 0 starts
the file afresh on every verify; once it reaches ``VerifyLogLimit`` bytes a
last line says so and further differences are only counted."""
from __future__ import annotations

import os
import threading
import time

from dtcore.control.config import Config, log_dir


class VerifyLog:
    """The verification log of one verify run."""

    def __init__(self, directory: str | os.PathLike[str], name: str = "DTVerify.log", *,
                 append: bool = True, limit: int = 1048576, title: str = "") -> None:
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, name)
        self.limit = limit
        self.dropped = 0
        self._lock = threading.Lock()
        self._file = open(self.path, "a" if append else "w", encoding="utf-8", errors="surrogateescape")
        self._size = self._file.tell()
        self._full = False
        self._line(f"{time.strftime('%Y-%m-%d %H:%M:%S')} verify started {title}".rstrip())

    @classmethod
    def from_config(cls, config: Config, title: str = "",
                    directory: str | os.PathLike[str] | None = None) -> "VerifyLog":
        """The log the settings describe, in ``directory`` instead of LogDir if given."""
        return cls(directory or log_dir(config), config["VerifyLogName"],
                   append=bool(config["VerifyLogAppend"]), limit=config["VerifyLogLimit"], title=title)

    def _line(self, text: str) -> None:
        data = text + "\n"
        if self.limit and self._size + len(data) > self.limit:
            if not self._full:
                self._full = True
                note = "VerifyLogLimit reached; further differences are not listed\n"
                self._file.write(note)
                self._size += len(note)
            self.dropped += 1
            return
        self._file.write(data)
        self._size += len(data)

    def write(self, path: str, reason: str) -> None:
        with self._lock:
            self._line(f"DIFFERS\t{path}\t{reason}")

    def close(self, summary: str = "") -> None:
        with self._lock:
            if summary:
                self._file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} verify complete: {summary}\n")
            self._file.close()
