"""The command line's exit codes, one per kind of outcome, and the one place
that maps an error to its code (listed in ``dtcore --help`` and the README)."""
from __future__ import annotations

from dtcore.errors import (
    AccessDeniedError,
    ConnectionExistsError,
    ConnectionFailedError,
    DataOverloadError,
    HandshakeIncompleteError,
    IncompatibleVersionError,
    InvalidParameterError,
    InvalidPathError,
    NetworkFailedError,
    StreamError,
)

OK = 0
ERROR = 1  # anything without a code of its own below
USAGE = 2  # a bad argument or setting (argparse uses it too)
DIFFERENCES = 3  # verify found differences (and did not remirror them)
AUTHENTICATION = 4  # the shared secret was refused, or there is none
NETWORK = 5  # the target could not be reached, or the link failed for good
REFUSED = 6  # the target refused what was sent (a path, a frame, a busy target path)
PARTIAL = 7  # the target gave ops up: the copy is incomplete (Mirror Required)
TIMEOUT = 8  # nothing was acknowledged in time
INTERRUPTED = 130  # Ctrl-C

TABLE = [
    (OK, "success"), (ERROR, "another error"), (USAGE, "usage: a bad argument or setting"),
    (DIFFERENCES, "verify found differences"),
    (AUTHENTICATION, "authentication: the shared secret was refused or is missing"),
    (NETWORK, "network: the target cannot be reached or the link failed"),
    (REFUSED, "the target refused a path, a frame or a busy target path"),
    (PARTIAL, "partial transfer: the target gave ops up and needs a remirror"),
    (TIMEOUT, "timeout"), (INTERRUPTED, "interrupted (Ctrl-C)"),
]


def code_for(error: BaseException) -> int:
    """The exit code of a command that ended with ``error``."""
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED
    if getattr(error, "failure", None) is not None:  # the target kept failing one op
        return REFUSED
    if getattr(error, "result", None) is not None:  # a mirror the target left incomplete
        return PARTIAL
    if isinstance(error, AccessDeniedError):
        return AUTHENTICATION
    if isinstance(error, (ConnectionFailedError, NetworkFailedError, HandshakeIncompleteError,
                          IncompatibleVersionError)):
        return NETWORK
    if isinstance(error, (InvalidPathError, StreamError, DataOverloadError, ConnectionExistsError)):
        return REFUSED
    if isinstance(error, TimeoutError):
        return TIMEOUT
    if isinstance(error, InvalidParameterError):
        return USAGE
    return ERROR


def epilog() -> str:
    return "exit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in TABLE)
