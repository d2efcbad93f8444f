"""The disk queue: a native journal of segment files in QJournalDir, bounded by
QJournalSpaceMax and QJournalFreeSpaceMin, crash-safe and checked on reopen."""
from __future__ import annotations

import os
from typing import Any, Sequence

from dtcore._native._queue import Journal
from dtcore.control import settings
from dtcore.control.events import emit, log
from dtcore.errors import QueueCorruptError, QueueLogFileError, TargetDiskFullError
from dtcore.queues.records import MB, REPLICATION


class DiskQueue:
    """A journal of segment files in ``directory`` (QJournalDir).

    ``write_through`` (QLogWriteThrough) makes each push durable before it
    returns, concurrent pushes sharing one fdatasync.  Without it, a push may
    wait in the queue's write buffer until that fills or the queue closes;
    after that the record outlives this process, but a crash of the machine
    before the kernel writes it back may lose it.  Popped records are
    consumed for good once :meth:`commit` (or close, or moving past a
    segment) records the position.  With ``hold``, popping never consumes:
    a record stays (and comes back after a crash or a reopen) until
    :meth:`commit_mark` is given a mark taken after it was popped."""

    def __init__(self, directory: str | os.PathLike[str],
                 segment_mb: int = settings.default("QJournalFileSize"),
                 space_max_mb: int | None = settings.default("QJournalSpaceMax"),
                 free_min_mb: int = settings.default("QJournalFreeSpaceMin"),
                 write_through: bool = bool(settings.default("QLogWriteThrough")),
                 segment_bytes: int | None = None, hold: bool = False) -> None:
        settings.check("QJournalFileSize", segment_mb)
        settings.check("QJournalSpaceMax", space_max_mb)
        settings.check("QJournalFreeSpaceMin", free_min_mb)
        if space_max_mb == 0:
            raise QueueLogFileError("QJournalSpaceMax is 0: disk queuing is disabled")
        self.directory = os.fspath(directory)
        self.write_through = write_through
        self._j = Journal(self.directory, segment_bytes or segment_mb * MB,
                          None if space_max_mb is None else space_max_mb * MB,
                          free_min_mb * MB, write_through, hold)
        c = self._j.counts()
        self.torn_bytes: int = c["torn_bytes"]
        if self.torn_bytes:
            # expected after a crash: those bytes were never acknowledged
            log.warning("disk queue %s: cut %d bytes of a write torn by a crash",
                        self.directory, self.torn_bytes)
        if c["corrupt"]:
            emit(4070, conn=f"in disk queue {self.directory}",
                 detail=f"damaged data in segment {c['corrupt_segno']:#x} at byte "
                        f"{c['corrupt_offset']}; records from {c['corrupt_seq']} on are lost")

    def push(self, records: list[Any], ops: int | Sequence[int] = 1, kind: int = REPLICATION) -> int:
        try:
            return self._j.push(records, ops, kind)
        except (TargetDiskFullError, QueueLogFileError) as e:
            emit(4007, conn=f"(disk queue {self.directory} is full)", reason=str(e))
            raise

    def pop(self, max_records: int = 1024, max_bytes: int = MB, meta: bool = False,
            batch: bool = False) -> Any:
        """The oldest records (at most ``max_records``), [] when empty; with
        ``batch``, one :class:`RecordBatch`."""
        try:
            return self._j.pop(max_records, max_bytes, meta, batch)
        except QueueCorruptError as e:
            emit(4070, conn=f"in disk queue {self.directory}", detail=str(e))
            raise

    def prepend(self, records: list[Any], ops: int | Sequence[int] = 1, kind: int = REPLICATION) -> None:
        """Put records ahead of everything queued, durably."""
        self._j.prepend(records, ops, kind)

    def commit(self) -> None:
        self._j.commit()

    def mark(self) -> tuple[int, int, int]:
        """The reader's place after the last pop."""
        return self._j.mark()

    def commit_mark(self, mark: tuple[int, int, int]) -> None:
        """Consume (durably) every record popped before ``mark``."""
        self._j.commit_mark(mark)

    def counts(self) -> dict[str, Any]:
        return self._j.counts()

    def close(self) -> None:
        self._j.close()
