"""The last replication batch the target applied from each source, kept in
the target's state folder beside the data states.  With it a resent batch
(after a cut link, or a restart of either side) is recognised and dropped,
so every batch is applied once.

One small file per source identity, rewritten in place after each batch:
magic, batch number, CRC-32C.  A file that fails its check reads as "none
applied"; the data state of the target path (Mirror Required after a crash
the target cannot vouch for) covers that case."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
import threading

from dtcore._native._queue import crc32c

_FORMAT = struct.Struct("<8sQI4x")
_MAGIC = b"DTAPPLY1"


class AppliedBatches:
    """Batch numbers applied, per source; ``durable`` (TGWriteCache 0) syncs
    the target's file system before a number is recorded, so an
    acknowledgement then means the data is on disk, not in the page cache."""

    def __init__(self, directory: str, durable: bool = False) -> None:
        self.directory = directory
        self.durable = durable
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()

    def _fd(self, source: str) -> int:
        fd = self._fds.get(source)
        if fd is None:
            os.makedirs(self.directory, exist_ok=True)
            fd = os.open(os.path.join(self.directory, f"applied-{source}"),
                         os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._fds[source] = fd
        return fd

    def get(self, source: str) -> int:
        with self._lock:
            raw = os.pread(self._fd(source), _FORMAT.size, 0)
        if len(raw) != _FORMAT.size:
            return 0
        magic, seq, crc = _FORMAT.unpack(raw)
        return seq if magic == _MAGIC and crc == crc32c(raw[:16]) else 0

    def set(self, source: str, seq: int, sync_fd: int = -1) -> None:
        """Record ``seq`` as applied; with ``durable``, first sync the file
        system that ``sync_fd`` is on (the target path's folder)."""
        head = struct.pack("<8sQ", _MAGIC, seq)
        raw = _FORMAT.pack(_MAGIC, seq, crc32c(head))
        with self._lock:
            fd = self._fd(source)
            if self.durable:
                if sync_fd >= 0:
                    _syncfs(sync_fd)
                os.pwrite(fd, raw, 0)
                os.fdatasync(fd)
            else:
                os.pwrite(fd, raw, 0)

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


_libc: ctypes.CDLL | None = None


def _syncfs(fd: int) -> None:
    """syncfs(2): everything written to that file system reaches the disk."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if _libc.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
