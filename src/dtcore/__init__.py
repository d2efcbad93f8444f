"""dtcore: a performance-tuned file replication engine with a native core.

The embedding API: the engine (targets, connections, live replication,
mirrors, verify, restore) and its results, the op model a program reports
changes in, replication sets, settings (Config), the
exceptions an embedder catches, event subscription, the engine log and
statistics, and the kernels people call on their own: block checksums, the
rolling delta and payload compression.  Everything else is private to its
subpackage."""
from __future__ import annotations

try:
    from dtcore._native import _checksum as _probe  # noqa: F401
except ImportError as _e:  # pragma: no cover - only in an unbuilt checkout
    raise ImportError(
        "dtcore's native extensions are not built; run `make build` (or "
        "`pip install -e . --no-build-isolation`) in the project root") from _e

from dtcore.control.config import Config
from dtcore.control.enginelog import EngineLog
from dtcore.control.events import Event, subscribe
from dtcore.control.stats import ConState, Snapshot, Statistics
from dtcore.control.statserver import StatsServer
from dtcore.control.stsfile import StatsFile, StatsLogger
from dtcore.engine import Engine
from dtcore.errors import (
    AccessDeniedError,
    ConnectionFailedError,
    DTError,
    FileAccessError,
    InvalidParameterError,
    InvalidParameterTypeError,
    InvalidPathError,
    InvalidStatisticsFileError,
    NetworkFailedError,
    OutOfMemoryError,
    QueueLogFileError,
    StreamError,
    TargetDiskFullError,
)
from dtcore.model.checksum import block_checksums, differing_ranges, file_checksums, xxh3_64
from dtcore.model.compression import Compressor, Payload
from dtcore.model.delta import (
    Delta,
    Signature,
    apply_delta,
    delta,
    file_delta,
    file_signature,
    signature,
)
from dtcore.model.ops import Op, OpKind, pack_batch
from dtcore.model.repset import ReplicationSet, Rule
from dtcore.source.connection import Connection
from dtcore.source.mirror import MirrorOptions, MirrorResult
from dtcore.source.replication import Replication
from dtcore.source.restore import RestoreResult
from dtcore.target.service import Target

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError", "Compressor", "ConState", "Config", "Connection", "ConnectionFailedError",
    "DTError", "Delta", "Engine", "EngineLog", "Event", "FileAccessError", "InvalidParameterError",
    "InvalidParameterTypeError", "InvalidPathError", "InvalidStatisticsFileError", "MirrorOptions",
    "MirrorResult", "NetworkFailedError", "Op", "OpKind", "OutOfMemoryError", "Payload",
    "QueueLogFileError", "Replication", "ReplicationSet", "RestoreResult", "Rule", "Signature",
    "Snapshot", "Statistics", "StatsFile", "StatsLogger", "StatsServer", "StreamError", "Target",
    "TargetDiskFullError", "apply_delta", "block_checksums", "delta", "differing_ranges",
    "file_checksums", "file_delta", "file_signature", "pack_batch", "signature", "subscribe",
    "xxh3_64",
]
