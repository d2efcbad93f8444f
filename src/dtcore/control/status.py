"""The service view's document: what an engine serves, each connection's
state, and in one line why a connection makes no progress when it makes
none.  ``/api/status`` serves it as JSON and ``dtcore status`` prints it."""
from __future__ import annotations

import collections
import os
import threading
import time
from typing import Any, Callable

from dtcore._version import __version__

SCHEMA = 1


def document(snap: Any, targets: list[Any], connections: list[Any], replications: list[Any],
             mirrors: dict[int, Any], history: RpoHistory | None = None) -> dict[str, Any]:
    """The document of an engine's parts (see ``Engine.status``)."""
    server = {name: snap.value("server", name) for name in (
        "StartTime", "SourceState", "TargetState", "Logins", "FailedLogins", "RepOpsGenerated",
        "RepBytesGenerated", "MirOpsGenerated", "MirBytesGenerated", "autoDisConnects",
        "autoReConnects")}
    return {"schema": SCHEMA, "version": __version__, "time": time.time(), "server": server,
            "targets": [{"root": os.fsdecode(t.root.path), "address": f"{t.host}:{t.port}",
                         "sources": t.sources()} for t in targets],
            "connections": [_connection(c, replications, mirrors, history) for c in connections]}


def _connection(conn: Any, replications: list[Any], mirrors: dict[int, Any],
                history: RpoHistory | None) -> dict[str, Any]:
    c = conn.counters
    rep = conn.tx.rep
    replication = next((r for r in replications if r.conn is conn), None)
    mirror = mirrors.get(conn.id)
    disk = int(c["conBytesInDiskQueue"])
    out: dict[str, Any] = {
        "id": conn.id, "target": f"{conn.host}:{conn.port}", "target_path": "/" + conn.target_path,
        "repset": conn.repset, "connected": conn.alive,
        "target_state": conn.target_state,
        "transmit": "paused" if conn.tx.held else "paused by the target" if conn.tx.paused else
        "started" if conn.alive else "stopped",
        "mirror": mirror.status if mirror is not None else "Idle",
        "mirror_percent": round(mirror.percent, 1) if mirror is not None else None,
        "replication": replication.status if replication is not None else "Stopped",
        "queue_memory_bytes": max(0, int(c["conBytesInRepQueue"]) - disk),
        "queue_disk_bytes": disk,
        "bytes_sent": int(c["conBytesTx"]), "bytes_on_wire": int(c["conBytesCompressedTx"]),
        "ops_sent": int(c["conOpsTx"]), "unacknowledged_ops": int(c["conOpsInAckQueue"]),
        "rpo_seconds": int(c["ConRPL"]) if rep is not None else None,
    }
    out["why_idle"] = why_idle(conn, replication, out)
    out["rpo_history"] = history.of(conn.id) if history is not None else []
    return out


def why_idle(conn: Any, replication: Any, row: dict[str, Any]) -> str | None:
    """Why nothing moves on ``conn`` (None when something may): the first
    cause that holds, in one line."""
    notice = conn.tx.notice
    if notice is not None:
        f = notice.failure
        return (f"the target cannot apply an op on {f.path.decode(errors='replace')}: "
                f"{f.reason} (errno {f.errno}); attempt {notice.retries}")
    if not conn.alive:
        retrying = replication is not None and conn.config["AutoReconnect"]
        return "disconnected" + ("; reconnecting" if retrying else "; AutoReconnect is 0")
    if row["transmit"] == "paused":
        return "transmission paused by the user (POST /api/connections/N/resume)"
    if row["transmit"] == "paused by the target":
        return "the target asked for a pause (its queue is full: flow control)"
    if replication is not None and replication.error is not None:
        return f"replication failed: {replication.error}"
    watcher = replication.watcher if replication is not None else None
    if watcher is not None and watcher.error is not None:
        return f"the watcher failed: {watcher.error}"
    return None


class RpoHistory:
    """Each connection's recovery point every ``interval`` seconds over the
    last ``span``: (time, seconds behind) pairs for the service view's chart."""

    def __init__(self, read: Callable[[], dict[int, int]], interval: float = 10,
                 span: float = 3600) -> None:
        self.read, self.interval = read, interval
        self._points: dict[int, collections.deque[tuple[float, int]]] = {}
        self._size = max(1, int(span / interval))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dtcore-rpo", daemon=True)

    def start(self) -> "RpoHistory":
        self.sample()
        self._thread.start()
        return self

    def sample(self) -> None:
        now = time.time()
        values = self.read()
        with self._lock:
            for conn_id, rpo in values.items():
                points = self._points.setdefault(conn_id, collections.deque(maxlen=self._size))
                points.append((now, rpo))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def of(self, conn_id: int) -> list[tuple[float, int]]:
        with self._lock:
            return list(self._points.get(conn_id, ()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
