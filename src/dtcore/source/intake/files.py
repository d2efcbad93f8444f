"""Files opened through ``Replication.open``: each write goes to the source
file and is reported at the offset it landed on, the way a file-system
driver sees writes, so a program replicates by writing through them."""
from __future__ import annotations

import io
import os
import stat
from typing import TYPE_CHECKING, Any

from dtcore.errors import InvalidParameterError

if TYPE_CHECKING:
    from dtcore.source.replication import Replication

_FLAGS = {"r": os.O_RDONLY, "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
          "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND, "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL}


class ReplicatedRaw(io.RawIOBase):
    """The unbuffered file under the buffered and text layers."""

    def __init__(self, rep: Replication, path: bytes, mode: str) -> None:
        kinds = [c for c in mode if c in "rwax"]
        if len(kinds) != 1 or any(c not in "rwaxbt+" for c in mode):
            raise InvalidParameterError(f"open: mode {mode!r} is not a file mode")
        flags = _FLAGS[kinds[0]]
        if "+" in mode:
            flags = (flags & ~os.O_WRONLY) | os.O_RDWR
        self._rep = rep
        self._path = path
        self.name = os.fsdecode(rep.local(path))
        self.mode = mode
        local = rep.local(path)
        existed = os.path.lexists(local)
        self._fd = os.open(local, flags | os.O_CLOEXEC, 0o666)
        self._readable = kinds[0] == "r" or "+" in mode
        self._writable = kinds[0] != "r" or "+" in mode
        self._append = kinds[0] == "a"
        self._wrote = False
        if not existed:
            rep.create(path, stat.S_IMODE(os.fstat(self._fd).st_mode))
            self._wrote = True
        elif flags & os.O_TRUNC:
            rep.truncate(path, 0)
            self._wrote = True

    def readable(self) -> bool:
        return self._readable

    def writable(self) -> bool:
        return self._writable

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def readinto(self, buffer: Any) -> int:
        return os.readv(self._fd, [buffer])

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        offset = os.fstat(self._fd).st_size if self._append else os.lseek(self._fd, 0, os.SEEK_CUR)
        n = os.write(self._fd, view)
        if n:
            self._rep.write(self._path, offset, view[:n])
            self._wrote = True
        return n

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self._fd, offset, whence)

    def tell(self) -> int:
        return os.lseek(self._fd, 0, os.SEEK_CUR)

    def truncate(self, size: int | None = None) -> int:
        size = self.tell() if size is None else size
        os.ftruncate(self._fd, size)
        self._rep.truncate(self._path, size)
        self._wrote = True
        return size

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._wrote:  # the target copy takes the times the writes gave
                st = os.fstat(self._fd)
                self._rep.setattr(self._path, atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns)
        finally:
            os.close(self._fd)
            super().close()
