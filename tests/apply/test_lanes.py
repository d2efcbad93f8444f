"""Lanes (several appliers at once) against one applier applying the same op
stream in order: the trees they leave, and the ops they give up, must be the
same."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dtcore.apply.applier import Applier
from dtcore.apply.lanes import Lanes
from dtcore.apply.safe_paths import SafeRoot
from dtcore.model.ops import Attrs, Op, OpKind

DIRS = [b"a", b"a/b", b"c"]
FILES = [b"x", b"a/x", b"a/y", b"a/b/z", b"c/w"]
OLD = 1_000_000_000_000_000_000  # times set by ops are below this; kernel-set times are above


def _attrs(k: int) -> bytes:
    return Attrs(Attrs.MODE | Attrs.TIMES, 0o600 | (k & 0o44), 0, 0, OLD - k, OLD - k).pack()


ops = st.one_of(
    st.builds(lambda p, m: (OpKind.MKDIR, p, m, b""), st.sampled_from(DIRS), st.just(0o755)),
    st.builds(lambda p, m: (OpKind.CREATE, p, m, b""), st.sampled_from(FILES), st.sampled_from([0o644, 0o600])),
    st.builds(lambda p, o, d: (OpKind.WRITE, p, o, d), st.sampled_from(FILES),
              st.integers(0, 9000), st.binary(min_size=1, max_size=3000)),
    st.builds(lambda p, n: (OpKind.TRUNCATE, p, n, b""), st.sampled_from(FILES), st.integers(0, 5000)),
    st.builds(lambda p, k: (OpKind.SETATTR, p, 0, _attrs(k)), st.sampled_from(FILES + DIRS), st.integers(1, 99)),
    st.builds(lambda p, q: (OpKind.RENAME, p, 0, q), st.sampled_from(FILES), st.sampled_from(FILES)),
    st.builds(lambda p: (OpKind.DELETE, p, 0, b""), st.sampled_from(FILES)),
    st.builds(lambda p: (OpKind.RMDIR, p, 0, b""), st.sampled_from(DIRS)),
)


def _tree(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            s = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISDIR(s.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", p.read_bytes(), stat.S_IMODE(s.st_mode),
                            s.st_mtime_ns if s.st_mtime_ns < OLD else None)
    return out


def _apply(root: Path, stream: list[Op], lanes: int) -> tuple[dict[str, tuple], list[str]]:
    dropped: list[str] = []
    stale: set[bytes] = set()  # shared by the lanes, as a session shares it
    safe = SafeRoot(root)
    worker = Lanes(safe, lambda r: Applier(r, retry_delay=0, retry_limit=1, stale=stale,
                                           on_gave_up=lambda p, e: dropped.append(p.decode())),
                   lanes)
    try:
        for i in range(0, len(stream), 7):  # several calls, as frames arrive
            worker.apply(stream[i:i + 7])
    finally:
        worker.close()
        safe.close()
    return _tree(root), sorted(dropped)


@settings(max_examples=60, deadline=None)
@given(st.lists(ops, min_size=1, max_size=60))
def test_lanes_leave_what_one_applier_leaves(raw):
    stream = [Op(kind, 0, i + 1, path, arg, data) for i, (kind, path, arg, data) in enumerate(raw)]
    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as many:
        assert _apply(Path(many), stream, 3) == _apply(Path(one), stream, 1)


def test_a_folder_swapped_by_a_rename_is_not_written_through_a_stale_handle(tmp_path):
    """A lane's cached handle of folder ``a`` must not outlive a rename of ``a``."""
    stream = [Op(OpKind.CREATE, 0, 1, b"a/f", 0o644), Op(OpKind.CREATE, 0, 2, b"b/g", 0o644),
              Op(OpKind.RENAME, 0, 3, b"a", 0, b"moved"),
              Op(OpKind.WRITE, 0, 4, b"a/f", 0, b"new a"), Op(OpKind.WRITE, 0, 5, b"b/g", 0, b"g")]
    tree, dropped = _apply(tmp_path, stream, 2)
    assert not dropped
    assert tree["a/f"][1] == b"new a" and tree["moved/f"][1] == b""


def test_a_tolerated_op_reports_the_name_it_found_missing(tmp_path):
    # while a mirror runs, an op on a path the target lacks is no failure; the
    # name it would have left goes to on_missed, a removal's goes nowhere
    missed: list[bytes] = []
    root = SafeRoot(str(tmp_path))
    applier = Applier(root, on_missed=missed.append)
    applier.tolerant = True
    try:
        applier.apply([Op(OpKind.RENAME, 0, 1, b"gone", 0, b"new"),
                       Op(OpKind.SETATTR, 0, 2, b"absent", 0, _attrs(1)),
                       Op(OpKind.DELETE, 0, 3, b"never", 0, b""),
                       Op(OpKind.RMDIR, 0, 4, b"nodir", 0, b"")])
    finally:
        applier.close()
        root.close()
    assert missed == [b"new", b"absent"]
