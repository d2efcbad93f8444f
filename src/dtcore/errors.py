"""The package's exceptions: one class per error code of the guide (chapter
5), each with the code, a name and a message in our words.  The classes the
engine raises itself are written out below and also derive from the
matching builtin, so a caller may catch either; the rest are made from the
table in :mod:`dtcore._error_table` as ``<Name>Error``."""
from __future__ import annotations

import os

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


class WatchLimitError(OutOfMemoryError):
    """The kernel refused another file watch (inotify's max_user_watches or
    fanotify's mark limit); the message says which limit and how to raise it
    (-151)."""


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


class ConnectionExistsError(DTError, ConnectionError):
    """Another source already works on that target path (-106)."""

    code = -106


class InvalidPathError(DTError, ValueError):
    """A path from a peer is absolute, escapes its root, or is otherwise not a
    plain relative path (-225)."""

    code = -225


class InvalidSourcePathError(DTError, ValueError):
    """A replication set's root is missing or not a folder (-140)."""

    code = -140


class AccessDeniedError(DTError, PermissionError):
    """A peer did not prove the shared secret, or there is none to prove (-138)."""

    code = -138


class ConnectionFailedError(DTError, ConnectionError):
    """The connection to a target could not be made or remade (-145)."""

    code = -145


class NetworkFailedError(DTError, ConnectionError):
    """An established connection failed or was closed by its peer (-2102)."""

    code = -2102


class HandshakeIncompleteError(DTError, ConnectionError):
    """The peer sent something else than the handshake step due (-185)."""

    code = -185


class IncompatibleVersionError(DTError, ConnectionError):
    """The two ends share no protocol version (-157)."""

    code = -157


class DataOverloadError(DTError, ValueError):
    """A frame is larger than the negotiated maximum (-231)."""

    code = -231


class ListenFailedError(DTError, OSError):
    """A target service cannot listen on its address (-2105)."""

    code = -2105


def native_error(status: str, what: str, index: int, offset: int, expected: int, actual: int,
                 sys_errno: int = 0, context: str = "", journal: bool = False) -> DTError:
    """The exception for a failed csrc call: ``status`` is the code's name from
    csrc/dt_status.h (``"ARG"`` for DT_E_ARG; the bindings name it, so no
    number is written here) and the rest are its dt_err details.  With
    ``journal``, ``index`` is a journal segment and I/O failures are the
    queue file's."""
    prefix = f"{context}: " if context else ""
    numbers = f" (expected {expected}, got {actual})"
    if status == "CLOSED":
        return QueueClosedError(f"{prefix}{what}")
    if status == "DISKFULL":
        detail = f" (errno {sys_errno}: {os.strerror(sys_errno)})" if sys_errno else \
            f" ({actual} bytes would be left, minimum {expected})"
        return TargetDiskFullError(f"{prefix}{what}{detail}")
    if status == "LIMIT":
        return QueueLogFileError(f"{prefix}{what} (limit {expected}, would reach {actual})")
    places = ([f"record {index}"] if index >= 0 else []) + ([f"byte {offset}"] if offset >= 0 else [])
    loc = f" in segment {index:#x} at byte {offset}" if journal else \
        f" at {', '.join(places)}" if places else ""
    if status == "CORRUPT":
        return QueueCorruptError(f"{prefix}{what}{loc}, expecting record {expected}; "
                                 "the data must be remirrored")
    if journal and status == "IO":
        err = QueueLogFileError(f"{prefix}{what}{loc}: "
                                f"{os.strerror(sys_errno) if sys_errno else 'short read'}")
        err.errno = sys_errno
        return err
    if status == "ARG":
        return InvalidParameterError(f"{prefix}{what}{numbers}")
    if status == "NOMEM":
        return OutOfMemoryError(f"{prefix}{what} ({expected} units requested)")
    if status == "IO":
        reason = os.strerror(sys_errno) if sys_errno else "short read"
        return FileAccessError(f"{prefix}{what}{loc}: {reason} (wanted {expected} bytes, got {actual})",
                               sys_errno)
    if status in ("FORMAT", "RANGE"):
        return StreamError(f"{prefix}{what}{loc}{numbers}")
    return DTError(f"{prefix}internal error ({status}): {what}{loc}{numbers}")


# The classes written out above, each the class of its code; the other codes
# of the table get a generated ``<Name>Error`` class.
_WRITTEN: dict[int, type[DTError]] = {cls.code: cls for cls in (
    InvalidParameterError, StreamError, OutOfMemoryError, FileAccessError,
    InvalidStatisticsFileError, TargetDiskFullError, QueueLogFileError, InvalidPathError,
    InvalidSourcePathError, AccessDeniedError, ConnectionFailedError, NetworkFailedError,
    HandshakeIncompleteError, IncompatibleVersionError, DataOverloadError, ListenFailedError,
    ConnectionExistsError)}
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
