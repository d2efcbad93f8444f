"""The engine log: ``dtlog<N>.dtl`` files in ``LogDir``.

Each line has the guide's eight columns, separated by tabs: date, time,
process ID, thread ID, sequence number, type (1 warning or error, 2
information), message ID (0 when none) and text.  A file rolls once it
reaches ``MaxLogFileSize``; N runs 1..999 and then starts again at 1; only
the newest ``MaxNumberofLogFiles`` files are kept.

Several threads and several processes may log into one folder: every write
happens under an exclusive ``flock`` on ``dtlog.lck``, which also holds the
current file number and the last sequence number, so lines never interleave,
numbers never repeat and every process rolls the same file."""
from __future__ import annotations

import datetime as _dt
import fcntl
import os
import re
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dtcore.control import settings
from dtcore.control.events import ERROR, WARNING, Event, subscribe

ALERT, RELEASE = 1, 2  # the type column
MAX_SERIES = 999
LOCK_NAME = "dtlog.lck"
_STATE = struct.Struct("<4sIQ")  # magic, current N, last sequence number
_MAGIC = b"DTLK"


def log_name(n: int) -> str:
    return f"dtlog{n}.dtl"


def series_after(n: int, steps: int = 1) -> int:
    """The file number ``steps`` rolls after ``n`` (1..999, wrapping)."""
    return (n - 1 + steps) % MAX_SERIES + 1


def _clean(text: str) -> str:
    # one message, one line: tabs and newlines would break the columns
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n")


def format_line(when: float, pid: int, tid: int, seq: int, kind: int, msg_id: int, text: str) -> str:
    t = _dt.datetime.fromtimestamp(when)
    return (f"{t:%m/%d/%Y}\t{t:%H:%M:%S}.{t.microsecond // 1000:03d}\t{pid}\t{tid}\t{seq}\t{kind}\t"
            f"{msg_id}\t{_clean(text)}\n")


class EngineLog:
    """Appends lines to the engine log in ``directory`` (LogDir)."""

    def __init__(self, directory: str | os.PathLike[str],
                 max_size: int = settings.default("MaxLogFileSize"),
                 max_files: int = settings.default("MaxNumberofLogFiles"),
                 level: int = settings.default("LogMessageLevel"),
                 clock: Callable[[], float] | None = None) -> None:
        settings.check("MaxLogFileSize", max_size)
        settings.check("MaxNumberofLogFiles", max_files)
        settings.check("LogMessageLevel", level)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_size, self.max_files, self.level = max_size, max_files, level
        self._clock = clock or (lambda: _dt.datetime.now().timestamp())
        self._lock = threading.Lock()  # flock does not exclude threads sharing one descriptor
        self._fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._unsubscribe: Callable[[], None] | None = None
        self._file: tuple[int, int] | None = None  # (N, descriptor) of the file appended to

    def wants(self, kind: int, debug: bool = False) -> bool:
        """Whether LogMessageLevel lets a line of this type through."""
        if debug:
            return self.level >= 3
        return self.level >= (1 if kind == ALERT else 2)

    def write(self, text: str, msg_id: int = 0, kind: int = RELEASE, debug: bool = False) -> int | None:
        """Log one message; returns its sequence number (None when the level drops it)."""
        if not self.wants(kind, debug):
            return None
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                n, seq = self._state()
                seq += 1
                line = format_line(self._clock(), os.getpid(), threading.get_native_id(), seq, kind,
                                   msg_id, text).encode()
                n = self._append(n, line)
                os.pwrite(self._fd, _STATE.pack(_MAGIC, n, seq), 0)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        return seq

    def _state(self) -> tuple[int, int]:
        raw = os.pread(self._fd, _STATE.size, 0)
        if len(raw) == _STATE.size:
            magic, n, seq = _STATE.unpack(raw)
            if magic == _MAGIC and 1 <= n <= MAX_SERIES:
                return n, seq
        return self._rebuild_state()

    def _rebuild_state(self) -> tuple[int, int]:
        """No usable lock file: carry on after the newest existing log."""
        files = files_in_order(self.directory)
        if not files:
            return 1, 0
        newest = files[-1]
        return series_of(newest.name), last_sequence(newest)

    def _open(self, n: int) -> tuple[int, int]:
        """A descriptor for file N and its size, kept open between writes
        unless another process's roll has removed the file."""
        if self._file is not None and self._file[0] == n:
            st = os.fstat(self._file[1])
            if st.st_nlink:
                return self._file[1], st.st_size
        self._close_file()
        fd = os.open(self.directory / log_name(n), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                     0o644)
        self._file = (n, fd)
        return fd, os.fstat(fd).st_size

    def _close_file(self) -> None:
        if self._file is not None:
            os.close(self._file[1])
            self._file = None

    def _append(self, n: int, line: bytes) -> int:
        fd, size = self._open(n)
        if size and size + len(line) > self.max_size:
            n = series_after(n)
            (self.directory / log_name(n)).unlink(missing_ok=True)  # after a wrap: the old file
            # keep the newest max_files: drop the one that just fell out of the window
            for back in range(self.max_files, MAX_SERIES):
                old = self.directory / log_name(series_after(n, MAX_SERIES - back))
                if not old.exists():
                    break
                old.unlink()
            fd, _ = self._open(n)
        os.write(fd, line)
        return n

    # -- events --

    def event(self, event: Event) -> None:
        self.write(event.message, event.id, ALERT if event.level in (ERROR, WARNING) else RELEASE)

    def attach(self) -> EngineLog:
        """Log every event emitted from now on."""
        if self._unsubscribe is None:
            self._unsubscribe = subscribe(self.event)
        return self

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        with self._lock:
            self._close_file()
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> EngineLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- reading the log (logviewer, and a writer that lost its lock file) --
_NAME = re.compile(r"^dtlog(\d{1,3})\.dtl$")


def series_of(name: str) -> int:
    """N of a ``dtlog<N>.dtl`` file name; 0 for any other name."""
    m = _NAME.match(name)
    n = int(m[1]) if m else 0
    return n if 1 <= n <= MAX_SERIES else 0
COLUMNS = ("date", "time", "pid", "tid", "seq", "type", "id", "text")


@dataclass(frozen=True)
class Line:
    """One parsed log line; ``fields`` is None when it did not parse."""

    raw: str
    fields: tuple[str, ...] | None

    @property
    def type(self) -> int:
        return int(self.fields[5]) if self.fields else 0

    @property
    def id(self) -> int:
        return int(self.fields[6]) if self.fields else 0

    @property
    def seq(self) -> int:
        return int(self.fields[4]) if self.fields else -1


def parse(raw: str) -> Line:
    parts = raw.rstrip("\n").split("\t", 7)
    ok = len(parts) == 8 and all(p.isdigit() for p in parts[2:7])
    return Line(raw.rstrip("\n"), tuple(parts) if ok else None)


def first_sequence(path: Path) -> int:
    try:
        with open(path, errors="replace") as f:
            for raw in f:
                line = parse(raw)
                if line.fields:
                    return line.seq
    except OSError:
        pass
    return -1


def last_sequence(path: Path) -> int:
    """The highest sequence number in a log file (0 when it holds none)."""
    best = 0
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 65536))
            for raw in f.read().decode(errors="replace").splitlines():
                line = parse(raw)
                if line.fields:
                    best = max(best, line.seq)
    except OSError:
        pass
    return best


def files_in_order(directory: Path) -> list[Path]:
    """The dtlog files, oldest first (by the first sequence number in each,
    since numbers wrap from 999 to 1)."""
    found = [p for p in directory.iterdir() if series_of(p.name)]
    return sorted(found, key=lambda p: (first_sequence(p), series_of(p.name)))
