"""The mirror's decisions, apart from the code that carries them out: which
entries stay as they are without a look at their content (in bulk, over the
compared manifests), and per remaining file which transfer to use, given the
source entry, the target entry (or none), the options and the measured
hashing and network speeds.  Nothing here reads a file or the network."""
from __future__ import annotations

import threading

import numpy as np

from dtcore.model.manifest import (
    FILE,
    HASHED,
    NEWER,
    SAME_HASH,
    SAME_MODE,
    SAME_MTIME,
    SAME_SIZE,
    Entry,
)
from dtcore.protocol.messages import MAX_SIGNATURE_BLOCKS
from dtcore.source.mirror.options import (
    ATTRIBUTES,
    BLOCK,
    DIFFERENCE,
    ROLLING,
    SKIPPED,
    WHOLE,
    MirrorOptions,
)

# Per-file decisions besides the transfers WHOLE, BLOCK and ROLLING (and
# SKIPPED): the content is the same on both sides (only attributes may need
# sending), or a verify compares the file and sends nothing.
SAME, VERIFY = "same", "verify"


class Rates:
    """Measured hashing and network speeds (bytes/s), smoothed.  The
    network's is measured only while mirror frames queue up behind the link
    (the transmitter's ``on_drained``): a link that keeps up leaves it at
    its start value, and a changed file is then compared, not resent."""

    def __init__(self, hash_rate: float = 3e9, net_rate: float = 3e8) -> None:
        self.hash = hash_rate
        self.net = net_rate
        self._measured: set[str] = set()  # a first measurement replaces the start value
        self._lock = threading.Lock()

    def _update(self, name: str, nbytes: int, seconds: float) -> None:
        if nbytes >= 1 << 20 and seconds > 0:
            rate = nbytes / seconds
            with self._lock:
                if name in self._measured:
                    rate = 0.7 * getattr(self, name) + 0.3 * rate
                self._measured.add(name)
                setattr(self, name, rate)

    def hashed(self, nbytes: int, seconds: float) -> None:
        self._update("hash", nbytes, seconds)

    def sent(self, nbytes: int, seconds: float) -> None:
        self._update("net", nbytes, seconds)


def unchanged(opts: MirrorOptions, flags: np.ndarray, there: np.ndarray, is_file: np.ndarray,
              is_link: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Entries left as they are without a look at their content: the bulk of
    a mirror of a set that barely changed, decided at once."""
    verify_only = opts.verify_only
    same = there & ((flags & (SAME_SIZE | SAME_MTIME | SAME_MODE)) == (SAME_SIZE | SAME_MTIME | SAME_MODE))
    keep = np.zeros(len(flags), dtype=bool)
    if not verify_only and opts.overwrite == 0:
        keep |= there
    elif not verify_only and opts.overwrite == 2:
        keep |= there & ((flags & NEWER) != 0)
    if opts.checksum:
        keep |= same & ((flags & (HASHED | SAME_HASH)) == (HASHED | SAME_HASH)) & (sizes < opts.small_file)
    elif opts.mode == DIFFERENCE:
        keep |= same
    keep &= is_file
    if opts.mode == DIFFERENCE:
        keep |= is_link & there & ((flags & SAME_MTIME) != 0)
    return keep


def plan_file(e: Entry, t: Entry | None, opts: MirrorOptions, rates: Rates,
              cut_short: bool = False) -> str:
    """What to do with the regular file ``e`` whose target copy is ``t``:
    SKIPPED, SAME, VERIFY or one of the transfers (see :func:`transfer`).
    ``cut_short``: an earlier attempt was cut mid-file, so the target copy is
    compared block by block whatever its attributes say."""
    target_file = t is not None and t.kind == FILE
    if target_file and not cut_short and not opts.verify_only:
        assert t is not None
        if opts.overwrite == 0 or (opts.overwrite == 2 and t.mtime_ns >= e.mtime_ns):
            return SKIPPED
    if e.size == 0 and not opts.zero_k_files:
        return SKIPPED
    if target_file and not cut_short:
        assert t is not None
        if opts.checksum and e.size < opts.small_file and e.hash >= 0 and t.hash >= 0:
            if e.hash == t.hash and t.size == e.size:
                return SAME
        elif opts.mode == DIFFERENCE and not opts.checksum and t.size == e.size and \
                t.mtime_ns == e.mtime_ns:
            return SAME
    if opts.verify_only:
        return VERIFY
    return transfer(e, t, opts, rates, cut_short)


def transfer(e: Entry, t: Entry | None, opts: MirrorOptions, rates: Rates,
             cut_short: bool = False) -> str:
    """WHOLE, BLOCK or ROLLING: hashing both copies (in parallel) only pays
    when it costs less than sending every byte; a size change that is not a
    whole number of blocks means data has shifted, which a rolling delta
    follows and fixed blocks do not."""
    if t is None or t.kind != FILE or t.size == 0:
        return WHOLE
    if cut_short:
        return BLOCK
    if e.size < opts.small_file:
        return WHOLE
    hash_cost = max(e.size, t.size) / rates.hash
    send_cost = e.size / rates.net
    if hash_cost >= send_cost:
        return WHOLE
    shifted = e.size != t.size and (e.size - t.size) % opts.block != 0 and e.size > t.size // 2
    if shifted and -(-t.size // opts.block) <= MAX_SIGNATURE_BLOCKS:
        return ROLLING
    return BLOCK


def why(e: Entry, t: Entry | None, strategy: str) -> str:
    """The difference a verify with remirror reports for a file it resent."""
    if t is None or t.kind != FILE:
        return "missing on the target"
    if t.size != e.size:
        return f"size {t.size} on the target, {e.size} on the source"
    return "attributes differ" if strategy == ATTRIBUTES else "content differs"
