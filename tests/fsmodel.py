"""An in-memory file system that applies op streams: the oracle for the
merger.  Two streams are equivalent when they leave equal models."""
from __future__ import annotations

from dataclasses import dataclass, field

from dtcore.model.ops import Op, OpKind


@dataclass
class FsModel:
    files: dict[bytes, bytearray] = field(default_factory=dict)
    attrs: dict[bytes, bytes] = field(default_factory=dict)
    modes: dict[bytes, int] = field(default_factory=dict)
    dirs: set[bytes] = field(default_factory=set)

    def apply(self, op: Op) -> None:
        k, p = op.kind, op.path
        if k == OpKind.CREATE:
            self.files[p] = bytearray()
            self.modes[p] = op.arg
        elif k == OpKind.WRITE:
            if not op.data:
                return
            f = self.files.setdefault(p, bytearray())
            end = op.arg + len(op.data)
            if len(f) < end:
                f.extend(bytes(end - len(f)))
            f[op.arg:end] = op.data
        elif k == OpKind.TRUNCATE:
            f = self.files.setdefault(p, bytearray())
            if op.arg < len(f):
                del f[op.arg:]
            else:
                f.extend(bytes(op.arg - len(f)))
        elif k == OpKind.SETATTR:
            self.attrs[p] = op.data
        elif k == OpKind.RENAME:
            if p in self.files:
                self.files[op.data] = self.files.pop(p)
                for meta in (self.attrs, self.modes):
                    if p in meta:
                        meta[op.data] = meta.pop(p)
                    else:
                        meta.pop(op.data, None)
        elif k == OpKind.DELETE:
            self.files.pop(p, None)
            self.attrs.pop(p, None)
            self.modes.pop(p, None)
        elif k == OpKind.MKDIR:
            self.dirs.add(p)
        elif k == OpKind.RMDIR:
            self.dirs.discard(p)

    def run(self, ops: list[Op]) -> "FsModel":
        for op in ops:
            self.apply(op)
        return self
