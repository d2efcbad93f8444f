"""The events the engine can emit: the guide's IDs and levels (chapters 6 and
7), with message templates in our own words.  Fields in braces are filled
from the keyword arguments given to :func:`dtcore.control.events.emit`."""
from __future__ import annotations

from typing import NamedTuple

ERROR, WARNING, INFORMATION = "Error", "Warning", "Information"


class EventKind(NamedTuple):
    level: str
    template: str


_E, _W, _I = ERROR, WARNING, INFORMATION
# connection events take one {conn} field, built by connection_label()
_CONN = "{conn}"


def connection_label(target: str, address: str, repset: str, conn_id: int) -> str:
    """How connection events name a connection."""
    return f"to {target} ({address}), replication set {repset}, connection {conn_id}"


EVENTS: dict[int, EventKind] = {k: EventKind(*v) for k, v in {
    # engine lifecycle
    4000: (_I, "Engine kernel started"),
    4001: (_I, "Target service started"),
    4002: (_I, "Source service started"),
    4003: (_I, "Source service stopped"),
    4004: (_I, "Target service stopped"),
    4005: (_I, "Engine kernel stopped"),
    # connections
    4007: (_W, "Disconnecting automatically " + _CONN + ": {reason}"),
    4008: (_I, "Automatic disconnect done " + _CONN),
    4009: (_I, "Reconnecting replication set {repset} automatically to {target} ({address})"),
    4010: (_I, "Automatic reconnect of replication set {repset} to {target} ({address}) succeeded"),
    4011: (_E, "Automatic reconnect of replication set {repset} to {target} ({address}) failed"),
    4014: (_I, "Network transmission resumed " + _CONN),
    4015: (_I, "Network transmission paused " + _CONN + "; ops queue until it resumes"),
    4016: (_I, "Connected " + _CONN),
    4017: (_I, "Disconnected " + _CONN),
    4018: (_W, "{what}; mirroring and replication stay off until a restore is done"),
    # mirror and replication
    4019: (_I, "Mirror started " + _CONN),
    4020: (_I, "Mirror paused " + _CONN),
    4021: (_I, "Mirror resumed " + _CONN),
    4022: (_I, "Mirror stopped " + _CONN + ": {detail}"),
    4023: (_I, "Mirror complete " + _CONN + ": {detail}"),
    4024: (_I, "Replication started " + _CONN),
    4025: (_I, "Replication stopped " + _CONN),
    4026: (_I, "Target paused by the user"),
    4027: (_I, "Target resumed by the user"),
    4044: (_E, "Replication stopped after an error; restart the engine to recover"),
    4045: (_W, "{setting} must lie within 1025..65535; using {default} instead"),
    4046: (_E, "Cannot start: the port may be taken by another program ({detail})"),
    # orphans, restore, verify
    4048: (_I, "Orphan removal started " + _CONN),
    4049: (_I, "Orphan removal paused " + _CONN),
    4050: (_I, "Orphan removal resumed " + _CONN),
    4051: (_I, "Orphan removal stopped " + _CONN),
    4052: (_I, "Orphan removal complete " + _CONN),
    4053: (_I, "Restore started " + _CONN),
    4054: (_I, "Restore paused " + _CONN),
    4055: (_I, "Restore resumed " + _CONN),
    4056: (_I, "Restore stopped " + _CONN),
    4057: (_I, "Restore complete " + _CONN),
    4058: (_I, "Verify started " + _CONN),
    4059: (_I, "Verify paused " + _CONN),
    4060: (_I, "Verify resumed " + _CONN),
    4061: (_I, "Verify stopped " + _CONN),
    4062: (_I, "Verify complete " + _CONN),
    4063: (_I, "Bandwidth limit to {target} ({address}) is now {limit}"),
    4064: (_I, "Bandwidth limit to {target} ({address}) entered period \"{period}\" at {time}"),
    4065: (_W, "Target data state " + _CONN + " changed: {reason}"),
    4067: (_E, "No replication ops have arrived for a long time"),
    4068: (_E, "A write to a replicated volume failed"),
    4069: (_W, "MoveOrphansDir was missing or empty and has been reset"),
    # queues and integrity
    4070: (_E, "Queued data {conn} could not be read back; everything must be remirrored "
               "({detail})"),
    4071: (_W, "A network message failed its checksum ({detail})"),
    4072: (_W, "Queue use passed QueueSizeAlertThreshold of {threshold}% ({conn})"),
    4073: (_I, "A replication set changed"),
    4096: (_W, "Unknown setting {name} ({where}); it is ignored"),
    # target writes
    4110: (_W, "Target disk full writing {path}; retrying ({retries})"),
    4111: (_W, "Target cannot write {path}: it is in use; retrying ({retries})"),
    4112: (_W, "Target cannot write {path}: access denied; retrying ({retries})"),
    4113: (_W, "Target cannot write {path} ({reason}); retrying ({retries})"),
    4120: (_I, "Target wrote {path} after {retries} retries"),
    4150: (_E, "Target gave up writing {path} after {retries} retries; the op is discarded, remirror "
               "once the cause is fixed"),
    4155: (_W, "A file system operation did not finish in time ({detail}); remirror once the cause "
               "is fixed"),
    # in-band tasks
    4200: (_I, "Task {task} queued from {source} by {user} at {time}"),
    4201: (_W, "Task {task} dropped (queued from {source} by {user} at {time})"),
    4202: (_I, "Running task {task} script {script} (queued from {source} by {user} at {time})"),
    4203: (_I, "Task script {script} finished with exit code {code}"),
    4204: (_E, "Task script {script} failed: {reason}"),
    # jobs (Linux, chapter 7)
    5700: (_I, "Job created to protect {source}"),
    5701: (_I, "Protection started"),
    5702: (_I, "Protection paused"),
    5703: (_I, "Job stopped"),
    5704: (_W, "Job deleted"),
    5708: (_E, "Lost the network connection to {peer}"),
    5709: (_E, "General error: {detail}"),
    5710: (_E, "Job cannot talk to a server: {detail}"),
    5711: (_W, "Job has trouble talking to a server: {detail}"),
    5712: (_I, "Source-target connection and management link are healthy"),
    5715: (_E, "Source engine is down or unreachable"),
    5716: (_E, "Target engine is down or unreachable"),
    5717: (_I, "Target engine is up and reachable"),
    5718: (_I, "Source engine is up and reachable"),
    # management service (chapter 6, the part that fits)
    6000: (_I, "{detail}"),
    6001: (_W, "{detail}"),
    6002: (_E, "{detail}"),
    6003: (_I, "{kind} job \"{name}\" created with ID {id}"),
    6004: (_I, "{kind} job \"{name}\" (ID {id}) started"),
    6005: (_I, "{kind} job \"{name}\" (ID {id}) stopped"),
    6006: (_I, "{kind} job \"{name}\" (ID {id}) deleted"),
    6007: (_E, "{operation} failed for {kind} job \"{name}\" (ID {id})"),
    6008: (_I, "{operation} succeeded for {kind} job \"{name}\" (ID {id})"),
    6009: (_E, "A message could not be logged: {detail}"),
    6150: (_I, "Job \"{name}\" (ID {id}) protecting {source} finished its mirror"),
}.items()}


class _KeepMissing(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render(event_id: int, fields: dict[str, object]) -> str:
    """The message for ``event_id``; a field the caller left out shows as
    ``{name}`` rather than failing, since an event must never be lost."""
    return EVENTS[event_id].template.format_map(_KeepMissing(fields))
