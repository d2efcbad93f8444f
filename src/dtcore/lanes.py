"""Several appliers working through one ordered op stream at once.

Creating and writing files is kernel work that scales with cores, so the
target spreads the ops of different files over lanes, each an
:class:`~dtcore.applier.Applier` on its own clone of the root.  Ops on one
file keep their order (a file always goes to the same lane: its folder's
when it is created, so that one folder's lock is not fought over, else the
lane with the least work, so that large files are written side by side),
and any op that touches names or folders (mkdir, delete, rename, links, a
folder's attributes) waits until every op before it is applied and then runs
alone, so the result is the same as applying the stream in order."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Sequence

from dtcore.applier import Applier
from dtcore.ops import Op, OpKind
from dtcore.tree import SafeRoot

# Ops confined to the content of one file, which may run beside other files'.
_FILE_KINDS = frozenset((OpKind.CREATE, OpKind.WRITE, OpKind.TRUNCATE, OpKind.PATCH))
# What an op costs a lane besides the bytes it writes, in bytes' worth.
_OP_COST = 4096


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
        load = [0] * self.count  # bytes (and a page per op) given to each lane so far
        files: dict[bytes, int] = {}
        for op in ops:
            kind, path = op[0], op[3]
            # a SETATTR right after a file's content is that file's; any
            # other may be a folder's, whose time the writes inside would move
            if kind in _FILE_KINDS or (kind == OpKind.SETATTR and path in files):
                lane = files.get(path)
                if lane is None:
                    if kind == OpKind.CREATE:
                        # by folder: creating in one folder takes that folder's lock
                        lane = hash(path[:path.rfind(b"/") + 1]) % self.count
                    else:  # a file made before this batch: the least busy lane
                        lane = load.index(min(load))
                    files[path] = lane
                lanes[lane].append(op)
                load[lane] += _OP_COST + (len(op[5]) if kind == OpKind.WRITE else 0)
            else:
                self._run(lanes)
                files.clear()
                load = [0] * self.count
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
