"""New files' runs of ops applied by C (csrc/dt_apply_smallfiles.c) against a
plain-Python twin that applies the same ops with os calls, and the runs C
must leave to the general applier: a symlink on the way (never followed out
of the root), a path that is not plain, the engine's own folder, something
other than a file in the way."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dtcore._native import _smallfiles
from dtcore.apply.applier import Applier
from dtcore.apply.safe_paths import SafeRoot
from dtcore.model.ops import Attrs, Op, OpKind

PATHS = [b"a", b"b", b"d/a", b"d/e/f"]
OLD = 1_000_000_000_000_000_000


def run(path: bytes, mode: int, writes: list[tuple[int, bytes]], cut: int | None, k: int) -> list[Op]:
    ops = [Op(OpKind.CREATE, 0, 0, path, mode)]
    ops += [Op(OpKind.WRITE, 0, 0, path, off, data) for off, data in writes]
    if cut is not None:
        ops.append(Op(OpKind.TRUNCATE, 0, 0, path, cut))
    ops.append(Op(OpKind.SETATTR, 0, 0, path, 0, Attrs(
        Attrs.MODE | Attrs.OWNER | Attrs.TIMES, 0o600 | k % 0o100, os.getuid(), os.getgid(),
        OLD - k, OLD - 2 * k).pack()))
    return ops


runs = st.builds(run, st.sampled_from(PATHS), st.sampled_from([0o644, 0o600, 0]),
                 st.lists(st.tuples(st.integers(0, 70_000), st.binary(min_size=1, max_size=5000)),
                          max_size=4),
                 st.one_of(st.none(), st.integers(0, 80_000)), st.integers(1, 4000))


def twin(root: Path, ops: list[Op]) -> None:
    """The same ops with plain os calls on trusted paths."""
    for kind, _, _, path, arg, data in ops:
        p = root / os.fsdecode(path)
        if kind == OpKind.CREATE:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, arg or 0o600)
            os.close(fd)
        elif kind == OpKind.WRITE:
            fd = os.open(p, os.O_WRONLY)
            os.pwrite(fd, data, arg)
            os.close(fd)
        elif kind == OpKind.TRUNCATE:
            os.truncate(p, arg)
        else:
            a = Attrs.unpack(data)
            os.chmod(p, a.mode & 0o7777)
            os.utime(p, ns=(a.atime_ns, a.mtime_ns))


def tree(root: Path) -> dict[str, tuple]:
    out = {}
    for p in sorted(root.rglob("*")):
        st_ = p.lstat()
        content = p.read_bytes() if p.is_file() else b""
        out[str(p.relative_to(root))] = (stat.S_IFMT(st_.st_mode), stat.S_IMODE(st_.st_mode),
                                         st_.st_mtime_ns if p.is_file() else 0, content)
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(runs, min_size=1, max_size=8))
def test_runs_leave_the_tree_the_twin_leaves(batches: list[list[Op]]) -> None:
    ops = [op for r in batches for op in r]
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        for r in (a, b):  # runs need their folders (the applier makes missing ones)
            (Path(r) / "d" / "e").mkdir(parents=True)
        with SafeRoot(a) as root:
            assert _smallfiles.apply_runs(root.fd, ops, 0, b"", os.geteuid() == 0) == len(ops)
        twin(Path(b), ops)
        assert tree(Path(a)) == tree(Path(b))


def test_a_run_c_cannot_take_is_left_at_its_create() -> None:
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as outside:
        base = Path(tmp)
        (base / "link").symlink_to(outside)  # a folder symlink leading out of the root
        (base / "dir").mkdir()
        (base / "fine").mkdir()
        cases = [b"link/x", b"dir", b"a/../x", b".dtcore/x", b"missing/x"]
        with SafeRoot(base) as root:
            for path in cases:
                ops = run(b"fine/ok", 0o644, [(0, b"ok")], None, 1) + run(path, 0o644, [(0, b"z")], None, 1)
                assert _smallfiles.apply_runs(root.fd, ops, 0, b".dtcore", False) == 3, path
        assert os.listdir(outside) == []
        assert (base / "dir").is_dir() and (base / "fine" / "ok").read_bytes() == b"ok"
        assert not (base / "missing").exists()


def test_the_applier_takes_over_where_c_stops() -> None:
    """A folder where a file goes, a missing parent: C leaves them, the
    general path makes room or makes the folder, and the runs after them go
    back to C; the result is the twin's."""
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        (Path(a) / "a").mkdir()
        (Path(a) / "a" / "inner").write_bytes(b"old")
        ops = run(b"a", 0o644, [(0, b"file now")], None, 3) + \
            run(b"new/deep/f", 0o600, [(5, b"late")], 20, 4) + run(b"b", 0, [(0, b"b")], 1, 5)
        with SafeRoot(a) as root:
            Applier(root).apply(ops)
        twin(Path(b), ops)
        assert tree(Path(a)) == tree(Path(b))
