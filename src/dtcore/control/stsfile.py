"""``statistic.sts``: a binary, versioned, self-describing file of snapshots.

Layout (little-endian):

    header   8s magic "DTCSTS\\r\\n" | u16 version | u16 0 | u32 n | n bytes of
             JSON naming every section's fields in order (the schema)
    record   u32 body length | u32 CRC-32 of the body | body
    body     f64 time | server values | server texts |
             u16 targets, each: values, texts | u16 connections, each: values, texts
    values   one i64 per numeric field of the section, in schema order
    texts    per text field: u16 length | UTF-8 bytes

Readers take the field lists from the schema and match fields by name, so a
file keeps its meaning when the engine's lists change (a field the file
lacks reads as 0, one this engine lacks is left out); a file of a newer
version, a foreign, damaged or cut-off one is refused with the invalid
statistics file error (-143) naming the byte offset, and nothing else."""
from __future__ import annotations

import json
import os
import struct
import threading
import zlib
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from dtcore._files import replace_whole
from dtcore.control import settings
from dtcore.control.stats import SECTIONS, Snapshot, Statistics
from dtcore.errors import InvalidStatisticsFileError

MAGIC = b"DTCSTS\r\n"
VERSION = 1
_HEAD = struct.Struct("<8sHHI")
HEADER_SIZE = _HEAD.size
_REC = struct.Struct("<II")
RECORD_HEAD = _REC
OLD_NAME = "statistic-old.sts"


class _Schema:
    """The fields of each section in a file's order ("*name": a text field),
    and where each lands in this engine's order, so that a file written by
    an engine with other fields reads back by name, never shifted."""

    def __init__(self, sections: dict[str, list[str]]) -> None:
        self.sections = sections
        self.numeric = {s: [f.lstrip("@") for f in fs if f[0] != "*"] for s, fs in sections.items()}
        self.text = {s: [f[1:] for f in fs if f[0] == "*"] for s, fs in sections.items()}
        self.remap: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def map_onto(self, current: "_Schema") -> "_Schema":
        """Fill remap: (positions in ``current``, positions in this file) of
        the numeric fields both know; the others are left out, or read as 0."""
        for s in self.numeric:
            ours = {n: i for i, n in enumerate(current.numeric[s])}
            pairs = [(ours[n], i) for i, n in enumerate(self.numeric[s]) if n in ours]
            self.remap[s] = (np.array([p[0] for p in pairs], dtype=np.intp),
                             np.array([p[1] for p in pairs], dtype=np.intp))
        return self


CURRENT = _Schema({s: list(f) for s, f in SECTIONS.items()})
CURRENT.map_onto(CURRENT)


def header() -> bytes:
    schema = json.dumps({"sections": CURRENT.sections}, separators=(",", ":")).encode()
    return _HEAD.pack(MAGIC, VERSION, 0, len(schema)) + schema


def _texts(out: list[bytes], text: dict[str, str], fields: list[str]) -> None:
    for name in fields:
        b = text.get(name, "").encode()[:65535]
        out.append(struct.pack("<H", len(b)) + b)


def encode(snap: Snapshot) -> bytes:
    """One record for ``snap``."""
    parts = [struct.pack("<d", snap.time), snap.server.astype("<i8").tobytes()]
    _texts(parts, snap.server_text, CURRENT.text["server"])
    for section, rows in (("target", snap.targets), ("connection", snap.connections)):
        parts.append(struct.pack("<H", len(rows)))
        for values, text in rows:
            parts.append(values.astype("<i8").tobytes())
            _texts(parts, text, CURRENT.text[section])
    body = b"".join(parts)
    return _REC.pack(len(body), zlib.crc32(body)) + body


def _bad(path: Path, offset: int, why: str) -> InvalidStatisticsFileError:
    return InvalidStatisticsFileError(f"{path}: {why} at byte {offset}")


class _Body:
    """Reads a record body, turning any overrun into -143."""

    def __init__(self, data: bytes, base: int, path: Path) -> None:
        self.data, self.at, self.base, self.path = data, 0, base, path

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise _bad(self.path, self.base + self.at, "record body ends early")
        b = self.data[self.at:self.at + n]
        self.at += n
        return b

    def row(self, schema: _Schema, section: str) -> tuple[np.ndarray, dict[str, str]]:
        """One row, its values in this engine's field order."""
        n = len(schema.numeric[section])
        stored = np.frombuffer(self.take(8 * n), dtype="<i8")
        values = np.zeros(len(CURRENT.numeric[section]), dtype=np.int64)
        dst, src = schema.remap[section]
        values[dst] = stored[src]
        known = set(CURRENT.text[section])
        text = {}
        for name in schema.text[section]:
            (size,) = struct.unpack("<H", self.take(2))
            value = self.take(size).decode(errors="replace")
            if name in known:
                text[name] = value
        return values, text


def parse_header(data: bytes, path: Path) -> tuple[_Schema, int]:
    """The schema of a statistics stream and where its first record starts."""
    if len(data) < _HEAD.size:
        raise _bad(path, len(data), "file too short for a statistics header")
    magic, version, _, n = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise _bad(path, 0, "not a dtcore statistics file")
    if version > VERSION:
        raise _bad(path, 8, f"file version {version} is newer than this dtcore reads ({VERSION})")
    if _HEAD.size + n > len(data):
        raise _bad(path, len(data), "schema cut short")
    try:
        doc = json.loads(data[_HEAD.size:_HEAD.size + n])
    except (ValueError, RecursionError):
        raise _bad(path, _HEAD.size, "unreadable schema") from None
    sections = doc.get("sections") if isinstance(doc, dict) else None
    if not isinstance(sections, dict):
        raise _bad(path, _HEAD.size, "schema without its sections")
    for s in SECTIONS:
        fields = sections.get(s)
        if not isinstance(fields, list) or not all(
                isinstance(f, str) and f.lstrip("*@") for f in fields) or \
                len(set(fields)) != len(fields):
            raise _bad(path, _HEAD.size, f"schema section {s!r} is not a list of field names")
    return _Schema({s: list(sections[s]) for s in SECTIONS}).map_onto(CURRENT), _HEAD.size + n


def read(path: str | os.PathLike[str]) -> Iterator[Snapshot]:
    """Every snapshot in ``path``, oldest first; -143 at the first damage."""
    path = Path(path)
    data = path.read_bytes()
    schema, at = parse_header(data, path)
    while at < len(data):
        if at + _REC.size > len(data):
            raise _bad(path, at, "record header cut short")
        size, crc = _REC.unpack_from(data, at)
        body = data[at + _REC.size:at + _REC.size + size]
        if len(body) < size:
            raise _bad(path, at, "record cut short")
        if zlib.crc32(body) != crc:
            raise _bad(path, at, "record fails its checksum")
        yield decode(body, at + _REC.size, path, schema)
        at += _REC.size + size


def decode(body: bytes, base: int, path: Path, schema: _Schema = CURRENT) -> Snapshot:
    """The snapshot in a record body that starts at byte ``base`` of ``path``."""
    r = _Body(body, base, path)
    (when,) = struct.unpack("<d", r.take(8))
    server, server_text = r.row(schema, "server")
    rows = {}
    for section in ("target", "connection"):
        (count,) = struct.unpack("<H", r.take(2))
        rows[section] = [r.row(schema, section) for _ in range(count)]
    return Snapshot(when, server, server_text, rows["target"], rows["connection"])


def to_numpy(snaps: list[Snapshot]) -> dict[str, np.ndarray]:
    """Structured arrays for analysis: "server" has a row per snapshot,
    "target" and "connection" a row per entry, each with the snapshot's
    index and time first."""
    out = {}
    for section in SECTIONS:
        numeric, text = CURRENT.numeric[section], CURRENT.text[section]
        dtype = [("snapshot", "i8"), ("time", "f8")] + [(n, "i8") for n in numeric] + \
                [(t, "U256") for t in text]
        rows = []
        for i, s in enumerate(snaps):
            entries = [(s.server, s.server_text)] if section == "server" else \
                (s.targets if section == "target" else s.connections)
            for values, txt in entries:
                rows.append((i, s.time, *values.tolist(), *(txt.get(t, "") for t in text)))
        out[section] = np.array(rows, dtype=dtype)
    return out


class StatsFile:
    """Appends snapshots to ``statistic.sts``, starting over once the next
    record would pass ``max_size`` (StatsMaxFileSize); with ``save_old``
    (SaveStatFile 1) the full file is kept as ``statistic-old.sts``."""

    def __init__(self, path: str | os.PathLike[str],
                 max_size: int = settings.default("StatsMaxFileSize"),
                 save_old: bool = bool(settings.default("SaveStatFile"))) -> None:
        settings.check("StatsMaxFileSize", max_size)
        self.path, self.max_size, self.save_old = Path(path), max_size, save_old
        self._lock = threading.Lock()

    def append(self, snap: Snapshot) -> None:
        record = encode(snap)
        with self._lock:
            size = self.path.stat().st_size if self.path.exists() else 0
            if size and size + len(record) > self.max_size:
                if self.save_old:
                    os.replace(self.path, self.path.with_name(OLD_NAME))
                else:
                    self.path.unlink()
                size = 0
            if size == 0:
                # a new file appears whole, header and first record, so that a
                # reader never finds it empty
                replace_whole(self.path, header() + record)
                return
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            try:
                # one write per record: a crash can only cut the last one short
                os.write(fd, record)
            finally:
                os.close(fd)


class StatsLogger:
    """Writes a snapshot every ``interval`` seconds (StatsWriteInterval
    minutes in the engine) while running (StatsLoggingOn)."""

    def __init__(self, stats: Statistics, out: StatsFile, interval: float,
                 clock: Callable[[], float] | None = None) -> None:
        self.stats, self.out, self.interval = stats, out, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._clock = clock

    def start(self) -> StatsLogger:
        if self._thread is None and self.interval > 0:
            self._thread = threading.Thread(target=self._run, name="dtcore-stats", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.out.append(self.stats.snapshot(self._clock() if self._clock else None))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
