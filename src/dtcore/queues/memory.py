"""The memory queue: a native ring of records bounded in bytes
(QMemoryBufferMax) and ops (OpBufferSize)."""
from __future__ import annotations

from typing import Any, Sequence

from dtcore._native._queue import MemQ
from dtcore.control import settings
from dtcore.queues.records import MB, REPLICATION


class MemoryQueue:
    """Records in a ring of ``max_bytes`` (QMemoryBufferMax) holding at most
    ``max_ops`` ops (OpBufferSize, 0 = no limit).  Any number of producer
    threads; one consumer at a time."""

    def __init__(self, max_bytes: int | None = None, max_ops: int | None = None) -> None:
        if max_bytes is None:
            max_bytes = settings.default("QMemoryBufferMax") * MB
        if max_ops is None:
            max_ops = settings.default("OpBufferSize")
        self.max_bytes = max_bytes
        self._q = MemQ(max_bytes, max_ops)
        self.max_record: int = self._q.max_record

    def push(self, records: list[Any], ops: int | Sequence[int] = 1, kind: int = REPLICATION,
             timeout: float | None = None) -> int:
        """Push ``records`` in order, waiting up to ``timeout`` seconds for
        room (None: as long as it takes, 0: not at all).  Returns how many
        went in."""
        return self._q.push(records, ops, kind, timeout)

    def pop(self, max_records: int = 1024, timeout: float | None = None,
            max_bytes: int = MB, meta: bool = False, batch: bool = False) -> Any:
        """Up to ``max_records`` of the oldest records; [] if none arrived
        within ``timeout``.  With ``meta``, (record, ops, kind) tuples; with
        ``batch``, one :class:`RecordBatch` (empty on a timeout)."""
        return self._q.pop(max_records, timeout, max_bytes, meta, batch)

    def close(self) -> None:
        """Wake every waiter: pushes fail from now on, pops drain what is left."""
        self._q.close()

    def release(self) -> None:
        """Once closed and done with: drop what is left and give the ring's
        pages back at once (a large ring would otherwise stay resident until
        the queue is collected)."""
        self._q.release()

    def counts(self) -> dict[str, int]:
        return self._q.counts()
