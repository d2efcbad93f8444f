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
the data or the link is seen."""
from __future__ import annotations

AUTO, ALWAYS = "auto", "always"
MODES = (AUTO, ALWAYS)


class Adaptive:
    """The compression decision of one channel (thread-safe enough: each
    estimate is one float, replaced whole)."""

    ALPHA = 0.25  # weight of the newest sample in each moving average
    PROBE_EVERY = 16
    MIN_COMPRESSED = 64 << 10  # smaller samples time the call, not lz4
    MIN_SENT = 256 << 10  # smaller sends rarely wait for the link

    def __init__(self, mode: str = AUTO) -> None:
        if mode not in MODES:
            raise ValueError(f"compression mode {mode!r}: expected one of {', '.join(MODES)}")
        self.mode = mode
        self.ratio: float | None = None  # compressed size over original
        self.compress_rate: float | None = None  # original bytes per second through lz4
        self.link_rate: float | None = None  # wire bytes per second
        self.attempts = self.skipped = 0
        self._since_probe = 0

    def pays(self) -> bool:
        """Whether, by the current estimates, compressing is faster."""
        if self.ratio is None or self.compress_rate is None or self.link_rate is None:
            return True
        return self.compress_rate * (1.0 - self.ratio) > self.link_rate

    def want(self) -> bool:
        """Whether to compress the next payload (the rules allowing)."""
        if self.mode == ALWAYS or self.pays():
            self.attempts += 1
            return True
        self._since_probe += 1
        if self._since_probe >= self.PROBE_EVERY:
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
            self.link_rate = self._mix(self.link_rate, nbytes / seconds)

    def _mix(self, old: float | None, new: float) -> float:
        return new if old is None else old + self.ALPHA * (new - old)
