"""The kernel interfaces as the watcher reads them: changes come in order,
named as they were when they happened, even when a folder is renamed
before its earlier events are read."""
import os
import select

import pytest

from dtcore.source.intake.changes import Kind
from dtcore.source.intake.fanotify import FanotifyWatch
from dtcore.source.intake.fanotify import available as fanotify_available
from dtcore.source.intake.inotify import InotifyWatch

BACKENDS = [pytest.param(FanotifyWatch, marks=pytest.mark.skipif(
    not fanotify_available(), reason="fanotify needs CAP_SYS_ADMIN")), InotifyWatch]


def _all(watch):
    out = []
    poll = select.poll()
    poll.register(watch.fileno(), select.POLLIN)
    while poll.poll(200):
        batch = watch.read()
        if not batch:
            break
        out += batch
    return out


def _replay(changes):
    names = set()
    for kind, path, new in changes:
        if kind in (Kind.CREATE, Kind.MOVE_IN):
            names.add(path)
        elif kind == Kind.DELETE:
            names = {n for n in names if n != path and not n.startswith(path + b"/")}
        elif kind == Kind.MOVE:
            moved = {n for n in names if n == path or n.startswith(path + b"/")}
            names = (names - moved) | {new + n[len(path):] for n in moved}
    return names


@pytest.mark.parametrize("backend", BACKENDS)
def test_names_are_those_of_the_moment_of_each_event(tmp_path, backend):
    root = os.fsencode(tmp_path)
    watch = backend(root)
    try:
        os.mkdir(tmp_path / "d")
        (tmp_path / "d" / "x").write_bytes(b"data")
        os.rename(tmp_path / "d", tmp_path / "e")
        (tmp_path / "e" / "y").write_bytes(b"more")
        os.unlink(tmp_path / "e" / "x")
        changes = [(c.kind, os.path.relpath(c.path, root), c.new and os.path.relpath(c.new, root))
                   for c in _all(watch)]
    finally:
        watch.close()
    # replayed in order, the names give the tree as it is now (the kernel
    # may merge a file's create and delete into one event)
    assert _replay(changes) == {b"e", b"e/y"}
    if backend is FanotifyWatch:  # one mark sees everything; inotify watches d only once read
        assert any(k == Kind.MODIFY for k, _, _ in changes)
    assert changes.index((Kind.CREATE, b"d", None)) < changes.index((Kind.MOVE, b"d", b"e"))

@pytest.mark.parametrize("backend", BACKENDS)
def test_events_outside_the_root_are_not_reported(tmp_path, backend):
    (tmp_path / "watched").mkdir()
    (tmp_path / "beside").mkdir()
    watch = backend(os.fsencode(tmp_path / "watched"))
    try:
        (tmp_path / "beside" / "f").write_bytes(b"x")
        os.rename(tmp_path / "beside" / "f", tmp_path / "watched" / "f")
        changes = _all(watch)
    finally:
        watch.close()
    kinds = [(c.kind, os.path.basename(c.path)) for c in changes]
    assert kinds and all(os.fsencode(tmp_path / "watched") in c.path for c in changes)
    assert (Kind.MOVE_IN, b"f") in kinds
