"""dtcore: a performance-tuned file replication engine with a native core.

The embedding API: the engine (targets, connections, live replication,
mirrors, verify, restore) and its results, the op model a program reports
changes in, replication sets, settings (Config), the
exceptions an embedder catches, event subscription, the engine log and
statistics, and the kernels people call on their own: block checksums, the
rolling delta and payload compression.  Everything else is private to its
subpackage."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dtcore._version import __version__ as __version__

# Each public name and the module that defines it: loaded on first use, so
# that a command (or a program) pays only for the parts it touches.
_WHERE = {
    "Config": "dtcore.control.config",
    "EngineLog": "dtcore.control.enginelog",
    "Event": "dtcore.control.events",
    "subscribe": "dtcore.control.events",
    "ConState": "dtcore.control.stats",
    "Snapshot": "dtcore.control.stats",
    "Statistics": "dtcore.control.stats",
    "StatsServer": "dtcore.control.statserver",
    "StatsFile": "dtcore.control.stsfile",
    "StatsLogger": "dtcore.control.stsfile",
    "Engine": "dtcore.engine",
    "AccessDeniedError": "dtcore.errors",
    "ConnectionFailedError": "dtcore.errors",
    "DTError": "dtcore.errors",
    "FileAccessError": "dtcore.errors",
    "InvalidParameterError": "dtcore.errors",
    "InvalidParameterTypeError": "dtcore.errors",
    "InvalidPathError": "dtcore.errors",
    "InvalidStatisticsFileError": "dtcore.errors",
    "NetworkFailedError": "dtcore.errors",
    "OutOfMemoryError": "dtcore.errors",
    "QueueLogFileError": "dtcore.errors",
    "StreamError": "dtcore.errors",
    "TargetDiskFullError": "dtcore.errors",
    "block_checksums": "dtcore.model.checksum",
    "differing_ranges": "dtcore.model.checksum",
    "file_checksums": "dtcore.model.checksum",
    "xxh3_64": "dtcore.model.checksum",
    "Compressor": "dtcore.model.compression",
    "Payload": "dtcore.model.compression",
    "Delta": "dtcore.model.delta",
    "Signature": "dtcore.model.delta",
    "apply_delta": "dtcore.model.delta",
    "delta": "dtcore.model.delta",
    "file_delta": "dtcore.model.delta",
    "file_signature": "dtcore.model.delta",
    "signature": "dtcore.model.delta",
    "Op": "dtcore.model.ops",
    "OpKind": "dtcore.model.ops",
    "pack_batch": "dtcore.model.ops",
    "ReplicationSet": "dtcore.model.repset",
    "Rule": "dtcore.model.repset",
    "Connection": "dtcore.source.connection",
    "MirrorOptions": "dtcore.source.mirror",
    "MirrorResult": "dtcore.source.mirror",
    "Replication": "dtcore.source.replication",
    "RestoreResult": "dtcore.source.restore",
    "Target": "dtcore.target.service",
}

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'dtcore' has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(module), name)
    except ImportError as e:
        if e.name is None or not e.name.startswith("dtcore._native"):
            raise
        raise ImportError(
            "dtcore's native extensions are not built; run `make build` (or "
            "`pip install -e . --no-build-isolation`) in the project root") from e
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


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
