"""What the commands print: a progress bar fed by a running mirror, what a
mirror sent and how, and a connection's statistics."""
from __future__ import annotations

import time
from typing import Any

from dtcore.control.stats import PERCENT_SCALE, Snapshot
from dtcore.source.mirror import Mirror, MirrorResult

# rich is imported where something is drawn: a quiet command never pays for it


class Bar:
    """A progress bar fed by mirror callbacks (from worker threads): state,
    bytes gone through of the bytes to go through (in a difference mirror,
    once the comparison has skipped what is the same, what is left is what
    may still be sent), rate, time left, and files done of the total."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        self.progress = Progress(TextColumn("{task.fields[status]:<16}"), BarColumn(),
                                 TaskProgressColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[files]}"),
                                 console=Console(stderr=True), transient=False)
        self.task = self.progress.add_task("mirror", total=None, status="Calculating", files="")
        self._notice: object = None

    def __call__(self, m: Mirror) -> None:
        notice = m.notice
        if notice is not None and notice is not self._notice:  # say why nothing moves
            f = notice.failure
            self.progress.console.print(f"target retrying {f.path.decode(errors='replace')}: "
                                        f"{f.reason} (attempt {notice.retries})")
        self._notice = notice
        total = m.bytes_total
        self.progress.update(self.task, total=total or None, completed=total - m.bytes_remaining,
                             status=m.status,
                             files=f"{m.files_done:,}/{m.result.files:,} files")

    def __enter__(self) -> "Bar":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def print_result(title: str, r: MirrorResult) -> None:
    from rich.console import Console
    from rich.table import Table
    t = Table(title=title, show_header=False)
    t.add_row("files / folders", f"{r.files:,} / {r.directories:,}")
    t.add_row("set size", f"{r.bytes_total:,} bytes")
    t.add_row("bytes sent (before compression)", f"{r.bytes_sent:,}")
    t.add_row("bytes on the wire", f"{r.wire_bytes:,}")
    t.add_row("bytes skipped", f"{r.bytes_skipped:,}")
    t.add_row("per-file transfer", ", ".join(f"{k} {v}" for k, v in r.strategies.items()))
    if r.hard_links:
        t.add_row("hard links", str(r.hard_links))
    if any(r.orphans.values()):
        t.add_row("orphans removed", ", ".join(f"{k} {v:,}" for k, v in r.orphans.items()))
    if r.resumed:
        t.add_row("resumed after reconnecting", f"{r.resumed} times")
    t.add_row("time", f"{r.seconds:.2f} s ({r.bytes_total / max(r.seconds, 1e-9) / 2**20:,.0f} MiB/s of set)")
    Console().print(t)


def print_connection_stats(snap: Snapshot, conn_row: int = 0) -> None:
    from rich.console import Console
    from rich.table import Table
    t = Table(title="statistics", show_header=False)
    for name in ("conBytesTx", "conBytesCompressedTx", "conOpsTx", "conResentOpCount",
                 "conBytesSkipped", "conMirrorBytesRemaining", "conMirrorPercent"):
        value = snap.value("connection", name, conn_row)
        if name == "conMirrorPercent":
            value = f"{int(value) / PERCENT_SCALE:.2f}%"
        t.add_row(name, f"{value:,}" if isinstance(value, int) else str(value))
    for name in ("RepOpsGenerated", "RepBytesGenerated", "MirOpsGenerated", "MirBytesGenerated",
                 "Logins", "FailedLogins"):
        t.add_row(name, f"{snap.value('server', name):,}")
    Console().print(t)


def print_status(doc: dict[str, Any]) -> None:
    """The service view in the terminal: the server, what it serves, and a
    row per connection with why it is idle when it is."""
    from rich.console import Console
    from rich.table import Table
    out = Console()
    srv = doc["server"]
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(srv["StartTime"])) \
        if srv["StartTime"] else "-"
    out.print(f"dtcore {doc['version']}, started {started}; source state {srv['SourceState']}, "
              f"target state {srv['TargetState']}; logins {srv['Logins']} "
              f"(failed {srv['FailedLogins']}); reconnects {srv['autoReConnects']}")
    for t in doc["targets"]:
        table = Table(title=f"target {t['root']} on {t['address']}")
        for col in ("source", "target path", "data state"):
            table.add_column(col)
        for s in t["sources"]:
            table.add_row(s["peer"], s["target_path"], s["data_state"])
        out.print(table)
    if doc["connections"]:
        table = Table(title="connections")
        for col in ("#", "target", "path", "target state", "transmit", "mirror", "replication",
                    "queue (memory / disk)", "sent / on wire", "RPO"):
            table.add_column(col)
        for c in doc["connections"]:
            mirror = c["mirror"] + (f" {c['mirror_percent']}%" if c["mirror_percent"] is not None
                                    and c["mirror"] != "Idle" else "")
            rpo = "-" if c["rpo_seconds"] is None else f"{c['rpo_seconds']} s"
            table.add_row(str(c["id"]), c["target"], c["target_path"], c["target_state"] or "-",
                          c["transmit"], mirror, c["replication"],
                          f"{c['queue_memory_bytes']:,} / {c['queue_disk_bytes']:,}",
                          f"{c['bytes_sent']:,} / {c['bytes_on_wire']:,}", rpo)
        out.print(table)
        for c in doc["connections"]:
            if c["why_idle"]:
                out.print(f"connection {c['id']}: nothing moves: {c['why_idle']}")
