"""SNMP: the guide's chapter 11 statistics and traps, served by an AgentX
sub-agent under NET-SNMP's snmpd (``master agentx``).

The objects and notifications are those of ``mibs/dt.mib`` (module
NSI-MIB, enterprise 2592); the tables below give each its number and where
its value comes from, and a test checks them against the MIB as snmpd's
own tools read it.  Values come from a statistics snapshot taken at most
once a second; counters are 32-bit and wrap, as the guide's are.  Traps
follow the engine's events, each carrying the event's ID and message;
dttrapKernelStarted is sent whenever the sub-agent opens a session with
the master (so a restarted snmpd hears that the engine is up), and the two
memory traps follow the statistics.  Traps for things dtcore does not do
(failover, licences, schedules) are in the MIB, described as never sent."""
from __future__ import annotations

import ipaddress
import socket
import threading
from pathlib import Path
from typing import Callable

from dtcore.control import agentx
from dtcore.control.agentx import (
    COUNTER32,
    GAUGE32,
    INTEGER,
    IP_ADDRESS,
    OCTET_STRING,
    OID,
    TIME_TICKS,
    Value,
)
from dtcore.control.events import Event, subscribe
from dtcore.control.stats import NOT_APPLICABLE, Snapshot, Statistics

MIB_FILE = Path(__file__).with_name("mibs") / "dt.mib"
DEFAULT_MASTER = "/var/agentx/master"  # snmpd's default agentXSocket
NSI = (1, 3, 6, 1, 4, 1, 2592)
GENERAL, CONNECTIONS, TRAPS = NSI + (1,), NSI + (2,), NSI + (3,)
TRAP_PREFIX, TRAP_OBJECTS = TRAPS + (0,), TRAPS + (1,)
CONNECTION_COUNT = CONNECTIONS + (1,)
ENTRY = CONNECTIONS + (2, 1)
EVENT_ID, EVENT_MESSAGE = TRAP_OBJECTS + (1, 0), TRAP_OBJECTS + (2, 0)
_MB = 1 << 20
_WRAP = 1 << 32

# dtGeneral's scalars in MIB order (arc 1, 2, ...): name, type, and the
# server statistic it shows ("+Name": summed over the target rows)
SCALARS: tuple[tuple[str, int, str], ...] = (
    ("dtUpTime", TIME_TICKS, "StartTime"),
    ("dtSourceState", INTEGER, "SourceState"),
    ("dtTargetState", INTEGER, "TargetState"),
    ("dtCurrentMemoryUsage", GAUGE32, "IQAllocatorTotalBytes"),
    ("dtCurrentMemoryUsageMB", GAUGE32, "IQAllocatorTotalBytes"),
    ("dtDriverQueuePercent", GAUGE32, "DriverQueuePercent"),
    ("dtLoginCount", COUNTER32, "Logins"),
    ("dtFailedLoginCount", COUNTER32, "FailedLogins"),
    ("dtMirOpsGenerated", COUNTER32, "MirOpsGenerated"),
    ("dtMirBytesGenerated", COUNTER32, "MirBytesGenerated"),
    ("dtRepOpsGenerated", COUNTER32, "RepOpsGenerated"),
    ("dtRepBytesGenerated", COUNTER32, "RepBytesGenerated"),
    ("dtFailedMirrorCount", COUNTER32, "FailedMirrorCount"),
    ("dtFailedRepCount", COUNTER32, "FailedRepCount"),
    ("dtRetryCount", COUNTER32, "+Retries"),
    ("dtOpsDroppedCount", COUNTER32, "+OpsDropped"),
    ("dtAutoDisCount", COUNTER32, "autoDisConnects"),
    ("dtAutoReCount", COUNTER32, "autoReConnects"),
    ("dtActFailCount", COUNTER32, "ActFailCount"),
)
# dtconEntry's columns from arc 2 (arc 1 is the index, dtconIndex): name,
# type, and the connection statistic
COLUMNS: tuple[tuple[str, int, str], ...] = (
    ("dtconIpAddress", IP_ADDRESS, "conPeerAddress"),
    ("dtconState", INTEGER, "conState"),
    ("dtconConnectTime", GAUGE32, "connectTime"),
    ("dtconOpsInCmdQueue", GAUGE32, "conOpsInCmdQueue"),
    ("dtconOpsInAckQueue", GAUGE32, "conOpsInAckQueue"),
    ("dtconOpsInRepQueue", GAUGE32, "conOpsInRepQueue"),
    ("dtconOpsInMirQueue", GAUGE32, "conOpsInMirQueue"),
    ("dtconBytesInRepQueue", GAUGE32, "conBytesInRepQueue"),
    ("dtconBytesInMirQueue", GAUGE32, "conBytesInMirQueue"),
    ("dtconOpsTx", COUNTER32, "conOpsTx"),
    ("dtconBytesTx", COUNTER32, "conBytesTx"),
    ("dtconBytesCompressedTx", COUNTER32, "conBytesCompressedTx"),
    ("dtconOpsRx", COUNTER32, "conOpsRx"),
    ("dtconBytesRx", COUNTER32, "conBytesRx"),
    ("dtconResentOpCount", COUNTER32, "conResentOpCount"),
)
# the notifications in MIB order (arc 1, 2, ...) and the event that sends
# each: an ID, "statistics", or None for never (the MIB says why)
TRAP_LIST: tuple[tuple[str, int | str | None], ...] = (
    ("dttrapKernelStarted", 4000), ("dttrapKernelStopped", 4005),
    ("dttrapAutoDisconnectEndConnection", 4007), ("dttrapAutoDisconnectPauseTransmission", None),
    ("dttrapAutoReconnect", 4009), ("dttrapConnectionFailed", 4011),
    ("dttrapConnectionLost", 4017), ("dttrapConnectionPause", 4015),
    ("dttrapConnectionRequested", None), ("dttrapConnectionRequestReceived", None),
    ("dttrapConnectionResume", 4014), ("dttrapConnectionSucceeded", 4016),
    ("dttrapFailoverConditionMet", None), ("dttrapFailoverInProgress", None),
    ("dttrapLicenseViolationOnNetwork", None), ("dttrapLicenseViolationStartingSource", None),
    ("dttrapMemoryLimitReached", "statistics"), ("dttrapMemoryLimitRemedied", "statistics"),
    ("dttrapMirrorEnd", 4023), ("dttrapMirrorPause", None), ("dttrapMirrorResume", None),
    ("dttrapMirrorStart", 4019), ("dttrapMirrorStop", 4022),
    ("dttrapReplicationStart", 4024), ("dttrapReplicationStop", 4025),
    ("dttrapRepSetModified", None), ("dttrapRestoreComplete", 4057),
    ("dttrapRestoreStarted", 4053), ("dttrapScheduledConnectEnd", None),
    ("dttrapScheduledConnectStart", None), ("dttrapSourceStarted", 4002),
    ("dttrapSourceStopped", 4003), ("dttrapTargetFull", 4110),
    ("dttrapTargetStarted", 4001), ("dttrapTargetStopped", 4004),
    ("dttrapVerificationEnd", 4062), ("dttrapVerificationFailure", 4062),
    ("dttrapVerificationStart", 4058),
)
TRAP_OIDS = {name: TRAP_PREFIX + (arc,) for arc, (name, _) in enumerate(TRAP_LIST, 1)}
_BY_EVENT: dict[int, list[str]] = {}
for _name, _by in TRAP_LIST:
    if isinstance(_by, int):
        _BY_EVENT.setdefault(_by, []).append(_name)


def _counter(v: int) -> int:
    return v % _WRAP


def _gauge(v: int) -> int:
    return min(max(v, 0), _WRAP - 1)


_KIND: dict[int, Callable[[int], int]] = {COUNTER32: _counter, GAUGE32: _gauge,
                                         TIME_TICKS: _counter, INTEGER: int}


class _Addresses:
    """IPv4 addresses of target host names, each looked up once."""

    def __init__(self) -> None:
        self._known: dict[str, bytes] = {}

    def __call__(self, peer: str) -> bytes:
        host = peer.rpartition(":")[0] or peer
        if host not in self._known:
            try:
                addr = ipaddress.IPv4Address(host)
            except ValueError:
                try:
                    addr = ipaddress.IPv4Address(socket.gethostbyname(host))
                except OSError:
                    addr = ipaddress.IPv4Address(0)
            self._known[host] = addr.packed
        return self._known[host]


def view(snap: Snapshot, address: Callable[[str], bytes]) -> agentx.View:
    """The NSI-MIB's values in ``snap``."""
    values: dict[OID, Value] = {}
    for arc, (name, kind, stat) in enumerate(SCALARS, 1):
        if stat in NOT_APPLICABLE:
            continue  # answered noSuchInstance, never a made-up zero
        if stat.startswith("+"):
            v = sum(int(snap.value("target", stat[1:], row)) for row in range(len(snap.targets)))
        else:
            v = int(snap.value("server", stat))
        if name == "dtUpTime":
            v = int((snap.time - v) * 100)
        elif name == "dtCurrentMemoryUsageMB":
            v //= _MB
        values[GENERAL + (arc, 0)] = (kind, _KIND[kind](v))
    active = 0
    for row, conn_id in enumerate(snap.connection_ids):
        state = int(snap.value("connection", "conState", row))
        active += state != 0
        for arc, (name, kind, stat) in enumerate(COLUMNS, 2):
            raw = snap.value("connection", stat, row)
            if kind == IP_ADDRESS:
                value: Value = (kind, address(str(raw)))
            elif name == "dtconConnectTime":
                value = (kind, _gauge(int(snap.time) - int(raw)))
            else:
                value = (kind, _KIND[kind](int(raw)))
            values[ENTRY + (arc, conn_id)] = value
    values[CONNECTION_COUNT + (0,)] = (GAUGE32, active)
    objects = [GENERAL + (arc,) for arc in range(1, len(SCALARS) + 1)] + [CONNECTION_COUNT] + \
        [ENTRY + (arc,) for arc in range(2, len(COLUMNS) + 2)]
    return agentx.View(values, objects)


class SnmpAgent:
    """An engine's SNMP sub-agent: serves ``stats`` to the AgentX master at
    ``master`` and turns events into traps until :meth:`stop`.

    ``started`` is the engine's start event, sent as dttrapKernelStarted each
    time a session with the master opens."""

    CHECK_SECONDS = 1.0

    def __init__(self, stats: Statistics, master: str = DEFAULT_MASTER, *,
                 started: Event | None = None) -> None:
        self.stats = stats
        self.started = started
        self._addresses = _Addresses()
        self.subagent = agentx.SubAgent(master, NSI, self._view, on_open=self._opened)
        self._unsubscribe = subscribe(self._event)
        self._stop = threading.Event()
        self._memory_full = False
        self._thread = threading.Thread(target=self._check_memory, name="dtcore-snmp",
                                        daemon=True)

    def start(self) -> "SnmpAgent":
        self.subagent.start()
        self._thread.start()
        return self

    def _view(self) -> agentx.View:
        return view(self.stats.snapshot(), self._addresses)

    def trap(self, name: str, event_id: int, message: str) -> None:
        """Send notification ``name`` with the event's ID and message."""
        self.subagent.notify(TRAP_OIDS[name], [
            (EVENT_ID, (GAUGE32, event_id)),
            (EVENT_MESSAGE, (OCTET_STRING, message.encode()[:255]))])

    def _opened(self) -> None:
        if self.started is not None:
            self.trap("dttrapKernelStarted", self.started.id, self.started.message)

    def _event(self, event: Event) -> None:
        for name in _BY_EVENT.get(event.id, ()):
            if name == "dttrapKernelStarted":
                continue  # sent when a session opens (see the module docstring)
            if name == "dttrapVerificationFailure" and not event.fields.get("differences"):
                continue
            self.trap(name, event.id, event.message)

    def _check_memory(self) -> None:
        """dttrapMemoryLimitReached when a connection's queue starts going to
        disk, dttrapMemoryLimitRemedied when no queue is on disk any more."""
        while not self._stop.wait(self.CHECK_SECONDS):
            snap = self.stats.snapshot()
            on_disk = [int(snap.value("connection", "conBytesInDiskQueue", row))
                       for row in range(len(snap.connections))]
            full = any(on_disk)
            if full != self._memory_full:
                self._memory_full = full
                if full:
                    self.trap("dttrapMemoryLimitReached", 0,
                              f"a memory queue is full; {sum(on_disk)} bytes queued on disk")
                else:
                    self.trap("dttrapMemoryLimitRemedied", 0, "every queue fits in memory again")

    def stop(self) -> None:
        """Send the traps still queued, close the session, stop."""
        self._unsubscribe()
        self._stop.set()
        self._thread.join(5)
        self.subagent.stop()
