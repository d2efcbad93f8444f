"""Helpers for engine tests: build a source tree with every kind of entry and
compare two trees entry by entry (content, mode, mtime, symlink text, hard
links)."""
from __future__ import annotations

import os
import random
import stat
from pathlib import Path


def build(root: Path, seed: int = 1, big: int = 3 << 20) -> None:
    rng = random.Random(seed)
    (root / "docs" / "deep" / "deeper").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "big.bin").write_bytes(rng.randbytes(big))
    (root / "text.log").write_bytes(b"line of text for lz4\n" * 20000)
    (root / "zero").write_bytes(b"")
    for i in range(30):
        (root / "docs" / f"f{i:02d}.txt").write_bytes(rng.randbytes(rng.randrange(1, 5000)))
    (root / "docs" / "deep" / "deeper" / "leaf.dat").write_bytes(b"leaf" * 100)
    os.chmod(root / "docs" / "f00.txt", 0o640)
    os.utime(root / "docs" / "f01.txt", ns=(1_600_000_000_000_000_000, 1_600_000_000_123_456_789))
    os.symlink("docs/f02.txt", root / "rel-link")
    os.symlink(str(root / "docs" / "f03.txt"), root / "abs-link")
    os.link(root / "docs" / "f04.txt", root / "hard-twin")
    with open(root / "sparse.img", "wb") as f:
        f.truncate(8 << 20)
        f.seek(3 << 20)
        f.write(b"island of data")


def entries(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root and ".dtcore" in dirnames:
            dirnames.remove(".dtcore")
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("file", p.read_bytes(), stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    return out


def assert_same(source: Path, target: Path, remapped: dict[str, str] | None = None) -> None:
    """The target holds what the source holds; absolute links inside the
    source are expected re-rooted at the target."""
    ours, theirs = entries(source), entries(target)
    assert sorted(ours) == sorted(theirs)
    for rel, e in ours.items():
        t = theirs[rel]
        if e[0] == "link" and e[1].startswith(str(source) + "/"):
            assert t == ("link", str(target) + e[1][len(str(source)):]), rel
        else:
            assert t == e, rel


def exact(root: Path) -> tuple[dict[str, tuple], set[frozenset[str]]]:
    """Every entry beneath ``root`` and ``root`` itself (as "."): kind, mode,
    owner, modification time, and size and content or link text; and the
    groups of names that are hard links of one file."""
    out: dict[str, tuple] = {}
    groups: dict[tuple[int, int], set[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root and ".dtcore" in dirnames:
            dirnames.remove(".dtcore")
        names = dirnames + filenames + (["."] if Path(dirpath) == root else [])
        for name in names:
            p = Path(dirpath) / name
            rel = os.path.normpath(os.path.relpath(p, root))
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                body: object = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                body = (st.st_size, p.read_bytes())
                if st.st_nlink > 1:
                    groups.setdefault((st.st_dev, st.st_ino), set()).add(rel)
            else:
                body = None
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                        st.st_mtime_ns, body)
    return out, {frozenset(g) for g in groups.values() if len(g) > 1}


def assert_exact(source: Path, target: Path) -> None:
    """``target`` is an exact copy of ``source``: same entries, kinds, modes,
    owners, file and folder times, contents, link texts and hard links."""
    ours, our_links = exact(source)
    theirs, their_links = exact(target)
    missing = sorted(set(ours) - set(theirs))
    extra = sorted(set(theirs) - set(ours))
    differ = sorted(k for k in set(ours) & set(theirs) if ours[k] != theirs[k])
    detail = [f"{k}: {ours[k][:5]} != {theirs[k][:5]}" for k in differ[:10]]
    assert not (missing or extra or differ), (
        f"missing on the target {missing[:10]}, extra {extra[:10]}, differing {detail}")
    assert our_links == their_links
