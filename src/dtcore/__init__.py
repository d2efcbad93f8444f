"""dtcore: a performance-tuned file replication engine with a native core.

The public API: the engine (targets, connections, mirrors, verify, restore),
replication sets, block checksums, the rolling delta, the op model with its
write merger, payload compression, the queues, settings (Config), the
exception hierarchy, events, the engine log and statistics."""
from __future__ import annotations

try:
    from dtcore._native import _checksum as _probe  # noqa: F401
except ImportError as _e:  # pragma: no cover - only in an unbuilt checkout
    raise ImportError(
        "dtcore's native extensions are not built; run `make build` (or "
        "`pip install -e . --no-build-isolation`) in the project root") from _e

from dtcore._native._queue import RecordBatch
from dtcore.control.config import Config
from dtcore.control.enginelog import EngineLog
from dtcore.control.events import Event, emit, subscribe
from dtcore.control.stats import ConState, Snapshot, Statistics
from dtcore.control.statserver import StatsServer
from dtcore.control.stsfile import StatsFile, StatsLogger
from dtcore.engine import Engine
from dtcore.errors import (
    DTError,
    FileAccessError,
    InvalidParameterError,
    InvalidParameterTypeError,
    InvalidStatisticsFileError,
    OutOfMemoryError,
    StreamError,
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
from dtcore.model.ops import (
    Attrs,
    BatchInfo,
    Op,
    OpKind,
    merge_batch,
    merge_bound,
    pack_batch,
    scan_batch,
    unpack_batch,
)
from dtcore.model.repset import ReplicationSet, Rule
from dtcore.queues.journal import DiskQueue
from dtcore.queues.memory import MemoryQueue
from dtcore.queues.replication import ReplicationQueue
from dtcore.source.connection import Connection
from dtcore.source.mirror.mirror import Mirror, MirrorOptions, MirrorResult
from dtcore.source.restore import RestoreResult
from dtcore.target.service import Target

__version__ = "0.1.0"

__all__ = [
    "Attrs", "BatchInfo", "Compressor", "ConState", "Config", "Connection", "DTError", "Delta",
    "DiskQueue", "Engine", "EngineLog", "Event", "FileAccessError", "Mirror", "MirrorOptions",
    "MirrorResult", "ReplicationSet", "RestoreResult", "Rule", "Target",
    "InvalidParameterError", "InvalidParameterTypeError", "InvalidStatisticsFileError",
    "MemoryQueue", "Op", "OpKind", "OutOfMemoryError", "Payload", "RecordBatch", "ReplicationQueue",
    "Signature", "Snapshot", "Statistics", "StatsFile", "StatsLogger", "StatsServer", "emit",
    "subscribe", "StreamError", "apply_delta",
    "block_checksums", "delta", "differing_ranges", "file_checksums", "file_delta",
    "file_signature", "merge_batch", "merge_bound", "pack_batch", "scan_batch", "signature", "unpack_batch",
    "xxh3_64",
]
