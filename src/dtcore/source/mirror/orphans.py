"""Orphans: files and folders on the target path that the replication set
does not hold.  Which of them go (RemoveAllOrphans, RemoveOrphansTime) is
decided here; the target removes them, MaxRemoveOrphansOpSize paths to a
request, or moves them to its MoveOrphansDir when its own MoveOrphanedFiles
says so, and reports which it did."""
from __future__ import annotations

from dtcore.model.manifest import Entry
from dtcore.protocol.messages import OrphansReply, OrphansRequest
from dtcore.source.connection import Connection
from dtcore.source.mirror.options import MirrorOptions


def select_orphans(candidates: list[Entry], opts: MirrorOptions, now_ns: int) -> list[bytes]:
    """The paths to remove: every candidate, or with RemoveAllOrphans 0 only
    those not modified for RemoveOrphansTime minutes."""
    cutoff = now_ns - opts.orphan_minutes * 60 * 10**9
    return [t.path for t in candidates if opts.remove_all_orphans or t.mtime_ns < cutoff]


def remove_orphans(conn: Connection, paths: list[bytes], opts: MirrorOptions) -> OrphansReply:
    """Have the target remove (or move) ``paths``; the files, folders and
    bytes it removed."""
    files = directories = nbytes = 0
    moved = False
    n = opts.orphan_batch
    for i in range(0, len(paths), n):
        fields, _ = conn.call(OrphansRequest(tuple(paths[i:i + n])))
        reply = OrphansReply.parse(fields)
        files, directories, nbytes = (files + reply.files, directories + reply.directories,
                                      nbytes + reply.bytes)
        moved |= reply.moved
    return OrphansReply(files, directories, nbytes, moved)
