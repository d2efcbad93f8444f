"""The package's exceptions: one class per error code of the guide (chapter
5), each with the code, a name and a message in our words.  The classes the
engine raises itself are written out below and also derive from the
matching builtin, so a caller may catch either; the rest are made from the
table in :mod:`dtcore._error_table` as ``<Name>Error``."""
from __future__ import annotations

from dtcore._error_table import CODES


class DTError(Exception):
    """Base of every dtcore error; ``code`` is the guide's error code."""

    code: int = -1

    def __init__(self, message: str = "", *, code: int | None = None) -> None:
        if code is not None:
            self.code = code
        super().__init__(message or describe(self.code))

    @property
    def name(self) -> str:
        """The code's name (``InvalidParameter`` for -101)."""
        return CODES.get(self.code, ("Unknown", ""))[0]

    def __str__(self) -> str:
        return f"[{self.code}] {super().__str__()}"


def describe(code: int) -> str:
    """The message for ``code`` in our words."""
    return CODES.get(code, CODES[-1])[1]


class InvalidParameterError(DTError, ValueError):
    """A value is out of range or otherwise not allowed (-101)."""

    code = -101


class InvalidParameterTypeError(InvalidParameterError, TypeError):
    """A value is of the wrong type (-101)."""


class StreamError(DTError, ValueError):
    """Bytes from outside (an op batch, a compressed frame, delta
    instructions) are malformed (-229, the object stream is not OK)."""

    code = -229


class OutOfMemoryError(DTError, MemoryError):
    """The engine could not allocate what it needed (-151)."""

    code = -151


class FileAccessError(DTError, OSError):
    """Reading or writing a replicated file failed (-1, with the OS errno)."""

    code = -1

    def __init__(self, message: str, errno: int = 0) -> None:
        DTError.__init__(self, message)
        self.errno = errno


class InvalidStatisticsFileError(DTError, ValueError):
    """A statistics file is truncated, foreign or of a newer version (-143)."""

    code = -143


class TargetDiskFullError(DTError, OSError):
    """Queuing to disk would leave less free space than QJournalFreeSpaceMin,
    or the disk is full (-173)."""

    code = -173


class QueueLogFileError(DTError, OSError):
    """The disk queue cannot be read or written, or has reached
    QJournalSpaceMax or its segment-file limit (-175)."""

    code = -175


class QueueCorruptError(QueueLogFileError):
    """Queued data failed its check or is missing (-175): everything must be
    remirrored (event 4070)."""


class QueueClosedError(DTError):
    """The queue was closed (-1)."""


# Native status codes from csrc/dt_status.h.
_DT_E_ARG, _DT_E_NOMEM, _DT_E_IO, _DT_E_FORMAT, _DT_E_RANGE, _DT_E_SPACE = -1, -2, -3, -4, -5, -6


def native_error(status: int, what: str, index: int, offset: int, expected: int, actual: int,
                 sys_errno: int = 0, context: str = "") -> DTError:
    """Turn a csrc status and its details into the matching exception."""
    where = []
    if index >= 0:
        where.append(f"record {index}")
    if offset >= 0:
        where.append(f"byte {offset}")
    prefix = f"{context}: " if context else ""
    loc = f" at {', '.join(where)}" if where else ""
    numbers = f" (expected {expected}, got {actual})"
    if status == _DT_E_ARG:
        return InvalidParameterError(f"{prefix}{what}{numbers}")
    if status == _DT_E_NOMEM:
        return OutOfMemoryError(f"{prefix}{what} ({expected} units requested)")
    if status == _DT_E_IO:
        import os
        reason = os.strerror(sys_errno) if sys_errno else "short read"
        return FileAccessError(f"{prefix}{what}{loc}: {reason} (wanted {expected} bytes, got {actual})",
                               sys_errno)
    if status in (_DT_E_FORMAT, _DT_E_RANGE):
        return StreamError(f"{prefix}{what}{loc}{numbers}")
    return DTError(f"{prefix}internal error {status}: {what}{loc}{numbers}")


_WRITTEN: dict[int, type[DTError]] = {
    -101: InvalidParameterError, -229: StreamError, -151: OutOfMemoryError, -1: FileAccessError,
    -143: InvalidStatisticsFileError, -173: TargetDiskFullError, -175: QueueLogFileError,
}
ERRORS: dict[int, type[DTError]] = {}
for _code, (_name, _message) in CODES.items():
    _cls = _WRITTEN.get(_code)
    if _cls is None:
        _cls = type(f"{_name}Error", (DTError,), {"code": _code, "__doc__": f"{_message} ({_code})",
                                                   "__module__": __name__})
        globals()[_cls.__name__] = _cls
    ERRORS[_code] = _cls


def error_class(code: int) -> type[DTError]:
    """The exception class for a guide error code (DTError for an unknown one)."""
    return ERRORS.get(code, DTError)


def from_code(code: int, message: str = "") -> DTError:
    """An exception for ``code``; an unknown code keeps its number on a DTError."""
    cls = ERRORS.get(code)
    return cls(message) if cls is not None else DTError(message, code=code)
