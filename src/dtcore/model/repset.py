"""Replication sets: the rules that say which files and folders of a source
are protected, and the walk that lists them.

A rule names a path relative to the replication set's root (``*``, ``?``
and ``[...]`` wildcards allowed in any component) with the guide's
attributes: Inc or Exc, and Rec when it also covers every folder beneath the
path.  A rule without Rec covers the path and the files directly inside it.
A rule whose last component is a wildcard pattern (``logs/*.tmp``) with Rec
applies that pattern in the folder and in every folder beneath it, as the
guide's Rec says: ``*.swp,Exc,Rec`` leaves out every ``.swp`` file of the set.
Where several rules cover an entry, the most specific one (most path
components) decides, and Exc beats Inc at equal depth.  An entry no rule
covers is not protected."""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple

import numpy as np

from dtcore.errors import InvalidParameterError, InvalidSourcePathError
from dtcore.model.manifest import KIND_DIR, Entry, Listing, Parts, listing_of


@dataclass(frozen=True)
class Rule:
    """One replication set rule: ``path`` (relative, ``/``-separated, "" for
    the root), Inc or Exc, Rec or not."""

    path: str
    include: bool = True
    recursive: bool = True

    def __post_init__(self) -> None:
        if "\0" in self.path or self.path.startswith("/") or ".." in self.path.split("/"):
            raise InvalidParameterError(
                f"rule path {self.path!r} must be relative to the replication set root, "
                "without '..' or NUL")

    @property
    def parts(self) -> tuple[bytes, ...]:
        return tuple(os.fsencode(p) for p in self.path.split("/") if p)

    @classmethod
    def parse(cls, text: str) -> "Rule":
        """``PATH[,Inc|Exc][,Rec]`` as the guide writes attributes, e.g.
        ``logs/*.tmp,Exc`` or ``data,Inc,Rec``."""
        path, *attrs = [t.strip() for t in text.split(",")]
        words = {a.lower() for a in attrs}
        unknown = words - {"inc", "exc", "rec"}
        if unknown or {"inc", "exc"} <= words:
            raise InvalidParameterError(f"rule {text!r}: attributes are Inc or Exc, and Rec")
        return cls(path.strip("/"), "exc" not in words, "rec" in words or not attrs)

    def __str__(self) -> str:
        return ",".join([self.path or "/", "Inc" if self.include else "Exc"]
                        + (["Rec"] if self.recursive else []))


class Totals(NamedTuple):
    """What CalculateOnConnect works out: bytes, files and folders."""

    bytes: int
    files: int
    directories: int


def _match(pattern: tuple[bytes, ...], parts: tuple[bytes, ...]) -> bool:
    return len(pattern) == len(parts) and all(
        fnmatch.fnmatchcase(p, q) for p, q in zip(parts, pattern))


class ReplicationSet:
    """A named set of rules over a source root."""

    def __init__(self, root: str | os.PathLike[str], rules: Iterable[Rule | str] = ("",),
                 name: str = "") -> None:
        self.root = os.path.abspath(os.fspath(root))
        if not os.path.isdir(self.root):
            raise InvalidSourcePathError(f"replication set root {self.root} is not a folder")
        self.rules = [r if isinstance(r, Rule) else Rule.parse(r) if "," in r else Rule(r.strip("/"))
                      for r in rules]
        if not self.rules:
            raise InvalidParameterError("a replication set needs at least one rule")
        self.name = name or os.path.basename(self.root) or "root"
        # (pattern parts, rule, whether its last part is a pattern for any depth)
        self._compiled = [(r.parts, r, r.recursive and bool(r.parts) and
                           any(c in r.parts[-1] for c in b"*?[")) for r in self.rules]
        # one Inc,Rec rule on the root and nothing else: no entry needs checking
        self._all = [(r.parts, r.include, r.recursive) for r in self.rules] == [((), True, True)]

    def _verdict(self, parts: tuple[bytes, ...], is_dir: bool) -> tuple[int, bool] | None:
        """(depth, include) of the deciding rule for an entry, or None."""
        best: tuple[int, bool] | None = None
        for pattern, rule, anywhere in self._compiled:
            n = len(pattern)
            if n > len(parts):
                continue
            covers = _match(pattern, parts) or (
                _match(pattern, parts[:n]) and (rule.recursive or (
                    len(parts) == n + 1 and not is_dir))) or (
                anywhere and _match(pattern[:-1], parts[:n - 1]) and
                fnmatch.fnmatchcase(parts[-1], pattern[-1]))
            if covers and (best is None or n > best[0] or (n == best[0] and not rule.include)):
                best = (n, rule.include)
        return best

    def includes(self, path: bytes | str, is_dir: bool = False) -> bool:
        """Whether a relative path is protected by the rules."""
        parts = tuple(p for p in os.fsencode(path).split(b"/") if p)
        verdict = self._verdict(parts, is_dir)
        return bool(verdict and verdict[1])

    def _may_hold(self, parts: tuple[bytes, ...]) -> bool:
        """Whether anything beneath this folder could be included."""
        if self.includes(b"/".join(parts), True):
            return True
        n = len(parts)
        return any(rule.include and (
            (len(pattern) > n and _match(pattern[:n], parts)) or
            (anywhere and n >= len(pattern) - 1 and _match(pattern[:-1], parts[:len(pattern) - 1])))
            for pattern, rule, anywhere in self._compiled)

    def listing(self, hash_below: int = 0) -> Listing:
        """Every protected entry (with inode, device and link count), folders
        before what they hold, in a stable order.  Folders that only lead to
        included entries are listed too, so the target can hold them.  With
        ``hash_below``, regular files smaller than that carry their hash."""
        everything = listing_of(self.root, None, hash_below, ids=True)
        if self._all:
            return everything
        return everything.take(self._keep(everything, {b""}), self.includes)

    def parts(self, part: int, hash_below: int = 0) -> Iterator[tuple[Listing, bytes | None]]:
        """:meth:`listing` in parts, each walked when asked for, of about
        ``part`` bytes of records before the rules pick from them: per part
        its protected entries and the last path the walk reached (None when
        the part listed nothing)."""
        kept_dirs: set[bytes] = {b""}  # the rules keep a folder for what lies beneath
        for everything in Parts(self.root, part, None, hash_below, ids=True):
            last = everything.path(len(everything) - 1) if len(everything) else None
            if not self._all:
                everything = everything.take(self._keep(everything, kept_dirs), self.includes)
            yield everything, last

    def _keep(self, listing: Listing, kept_dirs: set[bytes]) -> np.ndarray:
        keep = np.zeros(len(listing), dtype=bool)
        kinds, _ = listing.columns()
        for i in range(len(listing)):
            path = listing.path(i)
            if path.rpartition(b"/")[0] not in kept_dirs:
                continue  # beneath a folder the rules leave out
            parts = tuple(path.split(b"/"))
            if kinds[i] == KIND_DIR:
                if self._may_hold(parts):
                    keep[i] = True
                    kept_dirs.add(path)
            else:
                verdict = self._verdict(parts, False)  # includes(), without splitting again
                keep[i] = bool(verdict and verdict[1])
        return keep

    def walk(self) -> Iterator[Entry]:
        """The entries of :meth:`listing`, one by one."""
        return iter(self.listing())

    def calculate(self) -> Totals:
        """Size and counts of the set (CalculateOnConnect)."""
        kinds, sizes = self.listing().columns()
        dirs = int((kinds == KIND_DIR).sum())
        return Totals(int(sizes.sum()), len(kinds) - dirs, dirs)
