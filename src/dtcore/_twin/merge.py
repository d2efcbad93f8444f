"""The write merger in plain Python, following csrc/dt_merge.c rule for rule
so that both produce the same batch byte for byte."""
from __future__ import annotations

from bisect import bisect_right

from dtcore.model.ops import Op, OpKind

_PER_FILE_BARRIERS = (OpKind.TRUNCATE, OpKind.SETATTR, OpKind.XATTR)


class _Group:
    def __init__(self, op: Op) -> None:
        self.file_id, self.path, self.seq = op.file_id, op.path, op.seq
        # pieces: [offset, bytes] sorted by offset, never overlapping
        self.starts: list[int] = []
        self.pieces: list[bytes] = []

    def add(self, off: int, data: bytes) -> None:
        end = off + len(data)
        lo = bisect_right([s + len(p) for s, p in zip(self.starts, self.pieces)], off)
        hi = lo
        while hi < len(self.starts) and self.starts[hi] < end:
            hi += 1
        new_s, new_p = [], []
        if lo < hi and self.starts[lo] < off:
            new_s.append(self.starts[lo])
            new_p.append(self.pieces[lo][:off - self.starts[lo]])
        new_s.append(off)
        new_p.append(data)
        if lo < hi and self.starts[hi - 1] + len(self.pieces[hi - 1]) > end:
            new_s.append(end)
            new_p.append(self.pieces[hi - 1][end - self.starts[hi - 1]:])
        self.starts[lo:hi] = new_s
        self.pieces[lo:hi] = new_p

    def trim(self, size: int) -> None:
        """Cut what a truncate to ``size`` cuts."""
        kept = [(s, p[:size - s]) for s, p in zip(self.starts, self.pieces) if s < size]
        self.starts = [s for s, _ in kept]
        self.pieces = [p for _, p in kept]

    def flush(self, max_chunk: int, out: list[Op]) -> None:
        runs: list[tuple[int, bytearray]] = []
        for s, p in zip(self.starts, self.pieces):
            if runs and runs[-1][0] + len(runs[-1][1]) == s:
                runs[-1][1].extend(p)
            else:
                runs.append((s, bytearray(p)))
        for s, data in runs:
            for i in range(0, len(data), max_chunk):
                out.append(Op(OpKind.WRITE, self.file_id, self.seq, self.path, s + i,
                              bytes(data[i:i + max_chunk])))


def merge_ops(ops: list[Op], max_chunk: int) -> list[Op]:
    """Merge a list of ops the way :func:`dtcore.model.ops.merge_batch` merges a batch."""
    out: list[Op] = []
    groups: dict[int, _Group] = {}  # insertion order = order of first write

    def flush(file_id: int) -> None:
        groups.pop(file_id).flush(max_chunk, out)

    fresh: Op | None = None  # the last namespace op, when it was a create
    for op in ops:
        if op.kind == OpKind.WRITE:
            if not op.data:
                continue
            g = groups.get(op.file_id)
            if g is not None and g.path != op.path:
                flush(op.file_id)
                g = None
            if g is None:
                g = groups[op.file_id] = _Group(op)
            g.seq = max(g.seq, op.seq)
            g.add(op.arg, op.data)
            continue
        if op.kind in _PER_FILE_BARRIERS:
            if op.file_id in groups:
                if op.kind == OpKind.TRUNCATE:
                    groups[op.file_id].trim(op.arg)
                flush(op.file_id)
        else:
            if op.kind == OpKind.DELETE and fresh is not None and fresh.path == op.path:
                g = groups.get(fresh.file_id)
                if g is not None and g.path == op.path:
                    del groups[fresh.file_id]  # moot: nothing else can share its data
            for fid in list(groups):
                flush(fid)
            fresh = op if op.kind == OpKind.CREATE else None
        out.append(op)
    for fid in list(groups):
        flush(fid)
    return out
