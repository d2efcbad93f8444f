"""Replication sets: the rules that say which files and folders of a source
are protected, and the walk that lists them.

A rule names a path relative to the replication set's root (``*``, ``?``
and ``[...]`` wildcards allowed in any component) with the guide's
attributes: Inc or Exc, and Rec when it also covers every folder beneath the
path.  A rule without Rec covers the path and the files directly inside it.
Where several rules cover an entry, the most specific one (most path
components) decides, and Exc beats Inc at equal depth.  An entry no rule
covers is not protected."""
from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple

from dtcore.errors import InvalidParameterError, InvalidSourcePathError
from dtcore.ops import Attrs

FILE, DIR, LINK = "f", "d", "l"


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


class Entry(NamedTuple):
    """One protected item: its path relative to the root and what ``lstat`` said."""

    path: bytes
    kind: str
    size: int
    mtime_ns: int
    mode: int
    uid: int
    gid: int
    ino: int
    dev: int
    nlink: int
    atime_ns: int
    #: XXH3-64 of a small file's content when a checksum manifest asked for it, else -1
    hash: int = -1

    def attrs(self) -> bytes:
        """A packed SETATTR payload giving this entry's mode, owner and times."""
        return Attrs(Attrs.MODE | Attrs.OWNER | Attrs.TIMES, self.mode, self.uid, self.gid,
                     self.atime_ns, self.mtime_ns).pack()

    @classmethod
    def of(cls, path: bytes, st: os.stat_result) -> "Entry":
        kind = DIR if stat.S_ISDIR(st.st_mode) else LINK if stat.S_ISLNK(st.st_mode) else FILE
        return cls(path, kind, st.st_size if kind == FILE else 0, st.st_mtime_ns,
                   stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_ino, st.st_dev,
                   st.st_nlink, st.st_atime_ns)


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
        self._compiled = [(r.parts, r) for r in self.rules]

    def _verdict(self, parts: tuple[bytes, ...], is_dir: bool) -> tuple[int, bool] | None:
        """(depth, include) of the deciding rule for an entry, or None."""
        best: tuple[int, bool] | None = None
        for pattern, rule in self._compiled:
            n = len(pattern)
            if n > len(parts):
                continue
            covers = _match(pattern, parts) or (
                _match(pattern, parts[:n]) and (rule.recursive or (
                    len(parts) == n + 1 and not is_dir)))
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
        return any(rule.include and len(pattern) > n and _match(pattern[:n], parts)
                   for pattern, rule in self._compiled)

    def walk(self) -> Iterator[Entry]:
        """Every protected entry, folders before what they hold, in a stable
        (sorted) order.  Folders that only lead to included entries are listed too,
        so the target can hold them."""
        stack: list[tuple[bytes, tuple[bytes, ...]]] = [(os.fsencode(self.root), ())]
        while stack:
            dirpath, parts = stack.pop()
            try:
                with os.scandir(dirpath) as it:
                    items = sorted(it, key=lambda e: e.name)
            except OSError:
                continue  # vanished or unreadable while walking: the next mirror sees it
            subdirs = []
            for item in items:
                child = parts + (item.name,)
                rel = b"/".join(child)
                try:
                    st = item.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if self._may_hold(child):
                        yield Entry.of(rel, st)
                        subdirs.append((item.path, child))
                elif (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)) and \
                        self.includes(rel):
                    yield Entry.of(rel, st)
            stack.extend(reversed(subdirs))

    def calculate(self) -> Totals:
        """Size and counts of the set (CalculateOnConnect)."""
        size = files = dirs = 0
        for e in self.walk():
            if e.kind == DIR:
                dirs += 1
            else:
                files += 1
                size += e.size
        return Totals(size, files, dirs)
