"""Several appliers working through one ordered op stream at once.

Creating and writing files is kernel work that scales with cores, so the
target splits the ops between two ops that touch names or folders into
units, and its lanes (each an :class:`~dtcore.apply.applier.Applier` on its own
clone of the root) take units from one shared list until it is empty, so a
lane held up by slow creations leaves the rest to the others.  A unit is
every op of the files created in one folder (one lane at a time takes that
folder's lock) or, for a file made before, every op of that file: the ops of
one file stay in order.  An op that touches names or folders (mkdir, delete,
rename, links, a folder's attributes) waits until every op before it is
applied and then runs alone, so the result is the same as applying the
stream in order."""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Sequence

from dtcore.apply.applier import Applier
from dtcore.apply.safe_paths import SafeRoot
from dtcore.model.ops import Op, OpKind

# Ops confined to the content of one file, which may run beside other files'.
_FILE_KINDS = frozenset((OpKind.CREATE, OpKind.WRITE, OpKind.TRUNCATE, OpKind.PATCH))

_Unit = list  # ops, in stream order


class Lanes:
    """Applies op lists over ``count`` appliers; see the module docstring."""

    def __init__(self, root: SafeRoot, make: Callable[[SafeRoot], Applier], count: int) -> None:
        self.count = max(1, count)
        self.main = make(root)
        self._roots = [root.clone() for _ in range(self.count - 1)]
        self._appliers = [self.main] + [make(r) for r in self._roots]
        self._pool = ThreadPoolExecutor(self.count - 1, thread_name_prefix="dtcore-lane") \
            if self.count > 1 else None

    @property
    def tolerant(self) -> bool:
        return self.main.tolerant

    @tolerant.setter
    def tolerant(self, value: bool) -> None:
        for a in self._appliers:
            a.tolerant = value

    def apply(self, ops: Sequence[Op | tuple]) -> None:
        """Apply ``ops`` with the same outcome as applying them in order."""
        if self._pool is None:
            self.main.apply(ops)
            return
        units: dict[bytes, _Unit] = {}
        files: dict[bytes, bytes] = {}  # file path -> its unit's key
        for op in ops:
            kind, path = op[0], op[3]
            # a SETATTR right after a file's content is that file's; any
            # other may be a folder's, whose time the writes inside would move
            if kind in _FILE_KINDS or (kind == OpKind.SETATTR and path in files):
                key = files.get(path)
                if key is None:
                    # a folder's key ends in "/", a file's never does
                    key = path[:path.rfind(b"/") + 1] if kind == OpKind.CREATE else path
                    files[path] = key
                unit = units.get(key)
                if unit is None:
                    unit = units[key] = []
                unit.append(op)
            else:
                self._run(units)
                files.clear()
                self.main.apply([op])
        self._run(units)

    def _run(self, units: dict[bytes, _Unit]) -> None:
        if not units:
            return
        assert self._pool is not None
        work = deque(units.values())
        units.clear()
        futures: list[Future[None]] = [self._pool.submit(_drain, a, work)
                                       for a in self._appliers[1:min(self.count, len(work))]]
        error: BaseException | None = None
        try:
            _drain(self.main, work)
        except BaseException as e:  # noqa: BLE001 - raised once the other lanes finish
            error = e
        for f in futures:
            try:
                f.result()
            except BaseException as e:  # noqa: BLE001
                error = error or e
        if error is not None:
            raise error

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for a in self._appliers:
            a.close()
        for r in self._roots:
            r.close()


def _drain(applier: Applier, work: deque[_Unit]) -> None:
    """Apply units from ``work`` until none is left (deque pops are atomic)."""
    while True:
        try:
            unit = work.popleft()
        except IndexError:
            return
        applier.apply(unit)
