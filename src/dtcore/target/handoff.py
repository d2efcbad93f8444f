"""Frame bodies handed from a session's reader to its applier uncopied.

Through the target queue a body is copied twice: into the ring by the
reader, out of it by the applier.  While the applier keeps up, the reader
instead reads each OPS body into a buffer of its own, queues an empty record
in its place (the queue still orders it and counts its ops) and the applier
takes the buffer itself.  A few buffers circulate, and what they hold counts
against the queue's memory settings as the ring would: once they are all
out (the applier is behind) or the queue would spill, bodies go through the
ring as before, which is where a backlog belongs: it is bounded there and
spills to disk."""
from __future__ import annotations

import threading

from dtcore.queues.records import MB, MIRROR, REPLICATION

# buffers out at once, and the largest body worth one: together they bound
# what the handoff holds outside the queue's accounting
MAX_BUFFERS = 4
MAX_BODY = 8 * MB


class Handoff:
    """Buffers lent by the reader (:meth:`buffer`, :meth:`claim`) and given
    back by the applier (:meth:`give_back`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[bytearray] = []
        self._out = 0
        self._pending: memoryview | None = None  # lent for the frame being read
        self.bytes = {REPLICATION: 0, MIRROR: 0}  # handed over, not yet applied

    def buffer(self, length: int, room: int) -> memoryview | None:
        """Where the reader reads an OPS body of ``length`` bytes, or None
        (no buffer free, too large, or more than the ``room`` the queue's
        memory settings leave beside what is out already): then the
        channel's own buffer, and the queue."""
        with self._lock:
            if self._pending is not None:  # the last frame was never claimed (a bad frame)
                self._pending = None
                self._out -= 1
            if length > MAX_BODY or self._out >= MAX_BUFFERS or \
                    sum(self.bytes.values()) + length > room:
                return None
            buf = next((b for b in self._free if len(b) >= length), None)
            if buf is not None:
                self._free.remove(buf)
            else:
                buf = bytearray(length)
            self._out += 1
            self._pending = memoryview(buf)[:length]
            return self._pending

    def claim(self, body: object, kind: int) -> memoryview | None:
        """``body`` if it is the buffer just lent (it is the applier's from
        now on), else None."""
        with self._lock:
            if body is None or body is not self._pending:
                return None
            self._pending = None
            self.bytes[kind] += len(body)
            return body

    def give_back(self, body: memoryview, kind: int) -> None:
        """The applier is done with ``body``: nothing may use it any more."""
        buf, n = body.obj, len(body)
        assert isinstance(buf, bytearray)
        try:
            body.release()
            # a bytearray refuses to change size while any view of it lives:
            # one that still has a view is left to its holder, not reused
            buf.append(buf.pop())
            reusable = True
        except BufferError:
            reusable = False
        with self._lock:
            self.bytes[kind] -= n
            self._out -= 1
            if reusable and len(self._free) < MAX_BUFFERS:
                self._free.append(buf)

    def close(self) -> None:
        """The session is over: let the free buffers go now, not when the
        session is collected."""
        with self._lock:
            self._free.clear()
