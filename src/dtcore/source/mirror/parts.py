"""What lets a mirror work through a large set part by part: the target's
manifest cut where the source's walk has got to, and the folders whose
attributes are set last, kept as packed records.  Both walks list paths in
one order (:func:`dtcore.model.manifest.order_key`), so the entries of the
target's listing up to the last path of a source part are all the target
has of that part: what among them matches nothing is on the target only."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from dtcore.model.manifest import Entry, Listing, order_key

_EMPTY = Listing.parse(b"")


class TheirParts:
    """The target's manifest as it arrives (:meth:`Connection.manifest_parts`),
    handed out in walk order up to a path.  It holds at most the entries
    past the last path asked for, and the part that followed them."""

    def __init__(self, parts: Iterator[memoryview]) -> None:
        self._parts = parts
        self._held = _EMPTY
        self._more = True

    def upto(self, last: bytes | None) -> Listing:
        """Their entries not handed out yet that sort at or before ``last``
        (all of them when None).  A manifest out of walk order raises
        StreamError: its entries could not be matched part by part."""
        key = order_key(last) if last is not None else None
        while self._more and (key is None or not len(self._held) or
                              order_key(self._held.path(len(self._held) - 1)) <= key):
            part = next(self._parts, None)
            if part is None:
                self._more = False
                break
            if len(part):
                self._held = Listing.parse(b"".join((self._held.records(), part)))
        n = len(self._held) if key is None else self._held.upto(key)
        out = Listing(self._held.data, self._held.offsets[:n])
        self._held = Listing.parse(self._held.records(n))
        return out


class Folders:
    """Folders whose attributes a mirror sets last: those it must set (made,
    or their attributes differ), and those it sets only if anything beneath
    them was written (which moves a folder's time)."""

    def __init__(self) -> None:
        self._records = bytearray()
        self._must: list[bool] = []

    def add(self, listing: Listing, picked: np.ndarray, must: np.ndarray) -> None:
        """The entries ``picked`` of ``listing`` (folders, in walk order)."""
        for i in np.flatnonzero(picked).tolist():
            self._records += listing.record(i)
            self._must.append(bool(must[i]))

    def deepest_first(self, touched: bool) -> list[Entry]:
        """The folders to set: all of them when something was ``touched``,
        deepest first (the reverse of walk order)."""
        listing = Listing.parse(bytes(self._records))
        return [listing.entry(i) for i in range(len(listing) - 1, -1, -1)
                if touched or self._must[i]]
