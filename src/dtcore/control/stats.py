"""Statistics: the counters of the guide's chapter 3 and snapshots of them.

Counters live in numpy int64 arrays, one row per section (the server-wide
sections, then one row per target peer and per connection), so native hot
paths can add to them through the array's buffer and readers copy a whole
section at once; nothing is done in Python per op.  Text fields (addresses,
the last file touched) are kept beside them and change rarely.

A :class:`Snapshot` is a timestamped copy of everything; :mod:`dtcore.control.stsfile`
writes snapshots to ``statistic.sts`` and :mod:`dtcore.cli.dtstat` prints them."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from enum import IntFlag
from typing import Callable

import numpy as np

# field names per section, in the guide's order; "*" marks a text field,
# "@" a UTC time in seconds
SERVER_FIELDS = (
    "SystemAllocatorTotalBytes", "IQAllocatorTotalBytes",
    "Logins", "FailedLogins",
    "SourceState", "TargetState", "@StartTime", "RepOpsGenerated", "RepBytesGenerated",
    "MirOpsGenerated", "MirBytesGenerated", "FailedMirrorCount", "FailedRepCount", "ActFailCount",
    "TargetOpenHandles", "DriverQueuePercent",
    "autoDisConnects", "autoReConnects", "*lastFileTouched",
)
TARGET_FIELDS = (
    "*PeerAddress", "*LocalAddress", "Ops Received", "Mirror Ops Received", "Retries", "OpsDropped",
    "Ops Remaining", "Orphan Files Removed", "Orphan Directories Removed", "Orphan Bytes Removed",
    "Bytes In Target Queue", "Bytes In Target Disk Queue", "TasksSucceeded", "TasksFailed",
    "TasksIgnored",
)
CONNECTION_FIELDS = (
    "*conPeerAddress", "@connectTime", "conState", "conOpsInCmdQueue", "conOpsInAckQueue",
    "conOpsInRepQueue", "conOpsInMirQueue", "conBytesInRepQueue", "conOpsTx", "conBytesInMirQueue",
    "conBytesTx", "conBytesCompressedTx", "conOpsRx", "conBytesRx", "conResentOpCount",
    "conBytesInDiskQueue", "conBandwidthLimit", "conBytesSkipped", "conMirrorBytesRemaining",
    "conMirrorPercent", "conTaskCmdsSubmitted", "conTaskCmdsQueued", "conTasksSucceeded",
    "conTasksFailed", "conTasksIgnored", "@ConRPT", "ConRPL", "@ConCurrentTime",
    "@ConMirrorStartTime", "@ConMirrorEndTime",
)
SECTIONS = {"server": SERVER_FIELDS, "target": TARGET_FIELDS, "connection": CONNECTION_FIELDS}
# statistics no dtcore engine can give, and why: shown as "n/a" by dtstat,
# left out of the metrics, never presented as a live zero
NOT_APPLICABLE = {
    "SystemAllocatorTotalBytes": "no system pagefile allocator on Linux",
    "ActFailCount": "dtcore has no licence keys",
    "TargetOpenHandles": "the target does not count its handles yet",
    "TasksSucceeded": "task commands are not supported yet",
    "TasksFailed": "task commands are not supported yet",
    "TasksIgnored": "task commands are not supported yet",
    "conTaskCmdsSubmitted": "task commands are not supported yet",
    "conTaskCmdsQueued": "task commands are not supported yet",
    "conTasksSucceeded": "task commands are not supported yet",
    "conTasksFailed": "task commands are not supported yet",
    "conTasksIgnored": "task commands are not supported yet",
    "conBandwidthLimit": "there is no bandwidth control yet (every link is unlimited)",
}
# conMirrorPercent is kept in hundredths of a percent so that it stays an integer
PERCENT_SCALE = 100


def names(section: str, kind: str) -> tuple[str, ...]:
    """The numeric ("n", times included) or text ("s") field names of a section."""
    fields = SECTIONS[section]
    if kind == "s":
        return tuple(f[1:] for f in fields if f[0] == "*")
    return tuple(f.lstrip("@") for f in fields if f[0] != "*")


class ConState(IntFlag):
    """conState: 0 none, 1 active, 2 paused, 4 scheduled, 8 error (4 and 8
    may be set together, giving 12)."""

    NONE = 0
    ACTIVE = 1
    PAUSED = 2
    SCHEDULED = 4
    ERROR = 8


class Counters:
    """One section's counters: int64 values addressed by name, plus text.
    ``values`` is the array native code adds to."""

    def __init__(self, section: str) -> None:
        self.section = section
        self.numeric = names(section, "n")
        self.index = {n: i for i, n in enumerate(self.numeric)}
        self.values = np.zeros(len(self.numeric), dtype=np.int64)
        self.text: dict[str, str] = dict.fromkeys(names(section, "s"), "")

    def add(self, name: str, amount: int = 1) -> None:
        self.values[self.index[name]] += amount

    def __setitem__(self, name: str, value: int | str) -> None:
        if name in self.text:
            self.text[name] = str(value)
        else:
            self.values[self.index[name]] = value

    def __getitem__(self, name: str) -> int | str:
        return self.text[name] if name in self.text else int(self.values[self.index[name]])

    def copy(self) -> tuple[np.ndarray, dict[str, str]]:
        return self.values.copy(), dict(self.text)


@dataclass
class Snapshot:
    """Everything at one instant: the server row, and a row per target peer
    and per connection (numeric arrays plus their text fields)."""

    time: float
    server: np.ndarray
    server_text: dict[str, str]
    targets: list[tuple[np.ndarray, dict[str, str]]] = field(default_factory=list)
    connections: list[tuple[np.ndarray, dict[str, str]]] = field(default_factory=list)
    # the engine's number of each connection row (a live snapshot's; a file keeps none)
    connection_ids: list[int] = field(default_factory=list)

    def value(self, section: str, name: str, row: int = 0) -> int | str:
        if section == "server":
            values, text = self.server, self.server_text
        else:
            values, text = (self.targets if section == "target" else self.connections)[row]
        if name in text:
            return text[name]
        return int(values[names(section, "n").index(name)])

    def same_counts(self, other: Snapshot | None) -> bool:
        """Whether nothing but the clock moved since ``other`` (dtstat then
        stops printing)."""
        if other is None or len(self.targets) != len(other.targets) or \
                len(self.connections) != len(other.connections):
            return False
        skip = names("connection", "n").index("ConCurrentTime")
        keep = np.ones(len(names("connection", "n")), dtype=bool)
        keep[skip] = False
        return (np.array_equal(self.server, other.server) and self.server_text == other.server_text
                and all(np.array_equal(a[0], b[0]) and a[1] == b[1]
                        for a, b in zip(self.targets, other.targets))
                and all(np.array_equal(a[0][keep], b[0][keep]) and a[1] == b[1]
                        for a, b in zip(self.connections, other.connections)))


class Statistics:
    """The engine's statistics: the server counters and a set of target and
    connection counters that come and go.  ``snapshot()`` copies them all."""

    def __init__(self) -> None:
        self.server = Counters("server")
        self.server["StartTime"] = int(time.time())
        self._lock = threading.Lock()
        self._targets: dict[str, Counters] = {}
        self._connections: dict[int, Counters] = {}
        self._feeds: dict[int, Callable[[], dict[str, int]]] = {}

    def feed(self, conn_id: int, read: Callable[[], dict[str, int]]) -> None:
        """Have each snapshot call ``read`` once (a queue's ``counts``, which
        copies the native counters in one go) and take the values whose
        names are connection or server statistics."""
        with self._lock:
            self._feeds[conn_id] = read

    def target(self, peer: str, local: str = "") -> Counters:
        """The counters for a source peer of this target (made on first use)."""
        with self._lock:
            c = self._targets.get(peer)
            if c is None:
                c = self._targets[peer] = Counters("target")
                c["PeerAddress"], c["LocalAddress"] = peer, local
            return c

    def connection(self, conn_id: int, peer: str = "") -> Counters:
        with self._lock:
            c = self._connections.get(conn_id)
            if c is None:
                c = self._connections[conn_id] = Counters("connection")
                c["conPeerAddress"] = peer
                c["connectTime"] = int(time.time())
            return c

    def _pull_feeds(self) -> None:
        with self._lock:
            feeds = list(self._feeds.items())
        for conn_id, read in feeds:
            conn = self.connection(conn_id)
            for name, value in read().items():
                if name in conn.index:
                    conn[name] = value
                elif name.replace(" ", "") in self.server.index:
                    self.server[name.replace(" ", "")] = value

    def snapshot(self, now: float | None = None) -> Snapshot:
        now = time.time() if now is None else now
        self._pull_feeds()
        with self._lock:
            ids = sorted(self._connections)
            conns = [self._connections[i].copy() for i in ids]
            targets = [c.copy() for c in self._targets.values()]
        when = names("connection", "n").index("ConCurrentTime")
        for values, _ in conns:
            values[when] = int(now)
        values, text = self.server.copy()
        return Snapshot(now, values, text, targets, conns, ids)
