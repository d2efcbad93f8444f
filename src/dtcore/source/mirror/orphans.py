"""Orphans: files and folders on the target path that the replication set
does not hold.  Which of them go (RemoveAllOrphans, RemoveOrphansTime) is
decided here; the target removes them, or moves them to MoveOrphansDir,
MaxRemoveOrphansOpSize paths to a request."""
from __future__ import annotations

from dtcore.model.manifest import Entry
from dtcore.source.connection import Connection
from dtcore.source.mirror.options import MirrorOptions


def select_orphans(candidates: list[Entry], opts: MirrorOptions, now_ns: int) -> list[bytes]:
    """The paths to remove: every candidate, or with RemoveAllOrphans 0 only
    those not modified for RemoveOrphansTime minutes."""
    cutoff = now_ns - opts.orphan_minutes * 60 * 10**9
    return [t.path for t in candidates if opts.remove_all_orphans or t.mtime_ns < cutoff]


def remove_orphans(conn: Connection, paths: list[bytes], opts: MirrorOptions) -> dict[str, int]:
    """Have the target remove (or move) ``paths``; the files, folders and
    bytes it removed."""
    removed = {"files": 0, "directories": 0, "bytes": 0}
    n = opts.orphan_batch
    for i in range(0, len(paths), n):
        reply, _ = conn.call("orphans", paths=[p.hex() for p in paths[i:i + n]],
                             move=opts.move_orphans)
        for k in removed:
            removed[k] += int(reply.get(k, 0))
    return removed
