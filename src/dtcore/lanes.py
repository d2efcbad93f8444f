"""Several appliers working through one ordered op stream at once.

Creating and writing files is kernel work that scales with cores, so the
target spreads the ops of different files over lanes, each an
:class:`~dtcore.applier.Applier` on its own clone of the root.  Ops on one
file keep their order (a file always goes to the same lane), and any op that
touches names or folders (mkdir, delete, rename, links, a folder's
attributes) waits until every op before it is applied and then runs alone,
so the result is the same as applying the stream in order."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Sequence

from dtcore.applier import Applier
from dtcore.ops import Op, OpKind
from dtcore.tree import SafeRoot

# Ops confined to the content of one file, which may run beside other files'.
_FILE_KINDS = frozenset((OpKind.CREATE, OpKind.WRITE, OpKind.TRUNCATE, OpKind.PATCH))


class Lanes:
    """Applies op lists over ``count`` appliers; see the module docstring."""

    def __init__(self, root: SafeRoot, make: Callable[[SafeRoot], Applier], count: int) -> None:
        self.count = max(1, count)
        self.main = make(root)
        self._roots = [root.clone() for _ in range(self.count - 1)]
        self._appliers = [self.main] + [make(r) for r in self._roots]
        self._pool = ThreadPoolExecutor(self.count - 1, thread_name_prefix="dtcore-lane") \
            if self.count > 1 else None

    def apply(self, ops: Sequence[Op | tuple]) -> None:
        """Apply ``ops`` with the same outcome as applying them in order."""
        if self._pool is None:
            self.main.apply(ops)
            return
        lanes: list[list[Op | tuple]] = [[] for _ in range(self.count)]
        files: set[bytes] = set()
        for op in ops:
            kind, path = op[0], op[3]
            # a SETATTR right after a file's content is that file's; any
            # other may be a folder's, whose time the writes inside would move
            if kind in _FILE_KINDS or (kind == OpKind.SETATTR and path in files):
                # by folder: creating in one folder takes that folder's lock
                lanes[hash(path[:path.rfind(b"/") + 1]) % self.count].append(op)
                files.add(path)
            else:
                self._run(lanes)
                files.clear()
                self.main.apply([op])
        self._run(lanes)

    def _run(self, lanes: list[list[Op | tuple]]) -> None:
        busy = [i for i, ops in enumerate(lanes) if ops]
        if not busy:
            return
        assert self._pool is not None
        futures: list[Future[int]] = [self._pool.submit(self._appliers[i].apply, lanes[i])
                                      for i in busy[1:]]
        error: BaseException | None = None
        try:
            self._appliers[busy[0]].apply(lanes[busy[0]])
        except BaseException as e:  # noqa: BLE001 - raised once the other lanes finish
            error = e
        for f in futures:
            try:
                f.result()
            except BaseException as e:  # noqa: BLE001
                error = error or e
        for i in busy:
            lanes[i].clear()
        if error is not None:
            raise error

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for a in self._appliers:
            a.close()
        for r in self._roots:
            r.close()
