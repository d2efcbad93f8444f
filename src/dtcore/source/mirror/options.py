"""What a mirror is asked to do and what it reports: the mirror kinds, the
transfer choices, the mirror status words, MirrorOptions built from the
settings and MirrorResult."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dtcore.control.config import Config

FULL, DIFFERENCE = "full", "difference"
WHOLE, BLOCK, ROLLING, SKIPPED, ATTRIBUTES = "whole", "block", "rolling", "skipped", "attributes"
# mirror status words
CALCULATING, IN_PROGRESS, WAITING, IDLE, REMOVING_ORPHANS, VERIFYING, STOPPED = (
    "Calculating", "In Progress", "Waiting", "Idle", "Removing Orphans", "Verifying", "Stopped")


@dataclass
class MirrorOptions:
    """What one mirror does; defaults come from the settings."""

    mode: str = DIFFERENCE
    checksum: bool = True
    orphans: bool = False
    verify: bool = False
    remirror: bool = False
    workers: int = 2
    overwrite: int = 1
    zero_k_files: bool = True
    small_file: int = 65536
    sparse: bool = True
    remap_link: bool = True
    block: int = 65536
    max_checksum_blocks: int = 32
    file_queue: int = 16
    remove_all_orphans: bool = True
    orphan_minutes: int = 60
    orphan_batch: int = 1000
    dry_run: bool = False  # plan only: list what would be sent and removed, change nothing
    # a profile: compare, ask for checksums and build deltas as a mirror
    # does, but send no op and change nothing (source.mirror.profile)
    profile: bool = False
    xattrs: bool = False  # ExtendedAttributes: send each entry's extended attributes
    # stop once the target has retried one op this many times (0: wait as
    # long as the target retries, the way a service does)
    retry_budget: int = 0
    itemize: bool = False  # list each change made in MirrorResult.items

    @classmethod
    def from_config(cls, config: Config, **overrides: Any) -> "MirrorOptions":
        c = config
        opts = cls(checksum=bool(c["ChecksumAll"]), overwrite=c["MirrorOverwrite"],
                   zero_k_files=bool(c["MirrorZeroKFiles"]), small_file=c["SmallFileThreshold"],
                   sparse=bool(c["EnableSparseFileMirroring"]), remap_link=bool(c["RemapLink"]),
                   block=c["MirrorChunkSize"], max_checksum_blocks=c["MaxChecksumBlocks"],
                   file_queue=c["FileQueueSize"], remove_all_orphans=bool(c["RemoveAllOrphans"]),
                   orphan_minutes=c["RemoveOrphansTime"],
                   orphan_batch=max(1, c["MaxRemoveOrphansOpSize"]),
                   xattrs=bool(c["ExtendedAttributes"]))
        for k, v in overrides.items():
            if v is not None:
                setattr(opts, k, v)
        return opts

    @property
    def verify_only(self) -> bool:
        """A verify that reports and sends nothing."""
        return self.verify and not self.remirror


@dataclass
class MirrorResult:
    """What a mirror (or verify) did."""

    files: int = 0
    directories: int = 0
    bytes_total: int = 0
    bytes_sent: int = 0
    bytes_skipped: int = 0
    wire_bytes: int = 0
    strategies: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        (WHOLE, BLOCK, ROLLING, ATTRIBUTES, SKIPPED), 0))
    hard_links: int = 0
    # files, directories and bytes removed; "moved": 1 when the target moved
    # them to its MoveOrphansDir instead
    orphans: dict[str, int] = field(default_factory=lambda: {"files": 0, "directories": 0, "bytes": 0})
    differences: list[tuple[str, str]] = field(default_factory=list)
    # with dry_run, what the mirror would do: (action, path), action being a
    # transfer choice, "mkdir", "symlink", "link" or "remove" (an orphan)
    planned: list[tuple[str, str]] = field(default_factory=list)
    # with itemize, what the mirror did, in the same form as ``planned``
    items: list[tuple[str, str]] = field(default_factory=list)
    # ops the target gave up: (path, the guide's code, errno, reason)
    dropped: list[tuple[str, int, int, str]] = field(default_factory=list)
    # pipes, sockets and devices in the set, which are not replicated: (kind, path)
    special: list[tuple[str, str]] = field(default_factory=list)
    log: str = ""  # a verify's DTVerify.log
    resumed: int = 0
    seconds: float = 0.0
