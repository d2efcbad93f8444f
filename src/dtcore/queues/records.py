"""What every queue holds: records (packed op batches) that carry their op count
and their kind, replication or mirror, and the error a failed native queue
call becomes."""
from __future__ import annotations

import os

from dtcore.errors import (
    DTError,
    QueueClosedError,
    QueueCorruptError,
    QueueLogFileError,
    TargetDiskFullError,
    native_error,
)

REPLICATION, MIRROR = 0, 1
MB = 1 << 20
# csrc/dt_status.h
_CLOSED, _LIMIT, _DISKFULL, _CORRUPT, _IO = -8, -9, -10, -11, -3


def queue_error(status: int, what: str, index: int, offset: int, expected: int, actual: int,
                sys_errno: int, context: str) -> DTError:
    """The exception for a failed queue call (used by the native binding)."""
    msg = f"{context}: {what}"
    if status == _CLOSED:
        return QueueClosedError(msg)
    if status == _DISKFULL:
        detail = f" (errno {sys_errno}: {os.strerror(sys_errno)})" if sys_errno else \
            f" ({actual} bytes would be left, minimum {expected})"
        return TargetDiskFullError(msg + detail)
    if status == _LIMIT:
        return QueueLogFileError(f"{msg} (limit {expected}, would reach {actual})")
    if status == _CORRUPT:
        return QueueCorruptError(f"{msg} in segment {index:#x} at byte {offset}, "
                                 f"expecting record {expected}; the data must be remirrored")
    if status == _IO:
        err = QueueLogFileError(f"{msg} in segment {index:#x} at byte {offset}: "
                                f"{os.strerror(sys_errno) if sys_errno else 'short read'}")
        err.errno = sys_errno
        return err
    return native_error(status, what, index, offset, expected, actual, sys_errno, context)
