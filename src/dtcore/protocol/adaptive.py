"""Whether compressing pays on this link, decided from what it costs here.

Sending ``n`` bytes raw takes ``n/B`` on a link moving ``B`` bytes a second;
compressed, ``n/C + n*r/B`` with lz4 taking ``n`` bytes at ``C`` a second
down to ``r*n``.  Compressing pays when ``C*(1-r) > B``: on a slow link, and
not on one faster than lz4 can shrink the bytes (loopback, 10 GbE) or for
data that does not shrink.  The channel measures all three as it goes: ``r``
and ``C`` from each compression it runs, ``B`` from each large send (a send
that fills the socket's buffer waits for the link, so sustained sending
measures the link).  Until all three are known it compresses; while it does
not, every ``PROBE_EVERY``-th payload is compressed anyway, so a change in
the data or the link is seen.

A rate measured at the start misleads: the socket's buffers take the first
megabytes at memory speed, and a mirror packs its frames ahead of the link.
So a backlog also decides: while ``BACKLOG`` bytes or more wait to be sent
and the latest large send went slower than lz4 runs, the link is behind the
producers, and data that shrinks by a tenth or more is compressed whatever
the averages say (and data that does not is probed every
``PROBE_BEHIND``-th payload: the CPU has time).  A backlog behind a fast
link means the target is the slow side, where shrinking the bytes gains
nothing."""
from __future__ import annotations

AUTO, ALWAYS = "auto", "always"
MODES = (AUTO, ALWAYS)


class Adaptive:
    """The compression decision of one channel (thread-safe enough: each
    estimate is one float, replaced whole)."""

    ALPHA = 0.25  # weight of the newest sample in each moving average
    PROBE_EVERY = 16
    PROBE_BEHIND = 2  # behind, the CPU waits for the link anyway: look at the data often
    MIN_COMPRESSED = 64 << 10  # smaller samples time the call, not lz4
    MIN_SENT = 256 << 10  # smaller sends rarely wait for the link
    BACKLOG = 8 << 20  # queued and unsent: the link is behind
    SHRINKS = 0.9  # a ratio worth compressing for when behind

    def __init__(self, mode: str = AUTO) -> None:
        if mode not in MODES:
            raise ValueError(f"compression mode {mode!r}: expected one of {', '.join(MODES)}")
        self.mode = mode
        self.ratio: float | None = None  # compressed size over original
        self.compress_rate: float | None = None  # original bytes per second through lz4
        self.link_rate: float | None = None  # wire bytes per second
        self.last_link_rate: float | None = None  # of the latest large send alone
        self.attempts = self.skipped = 0
        self._since_probe = 0

    def pays(self) -> bool:
        """Whether, by the current estimates, compressing is faster."""
        if self.ratio is None or self.compress_rate is None or self.link_rate is None:
            return True
        return self.compress_rate * (1.0 - self.ratio) > self.link_rate

    def behind(self, backlog: int) -> bool:
        """Whether the link holds back ``backlog`` bytes of data worth shrinking."""
        if backlog < self.BACKLOG or (self.ratio is not None and self.ratio >= self.SHRINKS):
            return False
        return self.compress_rate is None or self.last_link_rate is None or \
            self.last_link_rate < self.compress_rate

    def want(self, backlog: int = 0) -> bool:
        """Whether to compress the next payload (the rules allowing), with
        ``backlog`` bytes waiting to be sent ahead of it."""
        behind = self.behind(backlog)
        if self.mode == ALWAYS or behind or self.pays():
            self.attempts += 1
            return True
        self._since_probe += 1
        slow = backlog >= self.BACKLOG and (self.last_link_rate or 0.0) < (self.compress_rate or 1.0)
        if self._since_probe >= (self.PROBE_BEHIND if slow else self.PROBE_EVERY):
            self._since_probe = 0
            self.attempts += 1
            return True
        self.skipped += 1
        return False

    def compressed(self, original: int, stored: int, seconds: float) -> None:
        """One compression ran: ``original`` bytes became ``stored`` (the
        original size when lz4 did not shrink them) in ``seconds``."""
        if original < self.MIN_COMPRESSED or seconds <= 0:
            return
        self.ratio = self._mix(self.ratio, min(1.0, stored / original))
        self.compress_rate = self._mix(self.compress_rate, original / seconds)

    def sent(self, nbytes: int, seconds: float) -> None:
        """``nbytes`` went to the socket in ``seconds``."""
        if nbytes >= self.MIN_SENT and seconds > 0:
            self.last_link_rate = nbytes / seconds
            self.link_rate = self._mix(self.link_rate, self.last_link_rate)

    def _mix(self, old: float | None, new: float) -> float:
        return new if old is None else old + self.ALPHA * (new - old)
