"""The typed bodies of what the two ends say to each other besides ops: the
HELLO and WELCOME fields of the handshake, each request a source sends a
target, and each reply.  Every method name and field is spelled here once.
The source builds a request with its class and reads the reply with the
reply's class; the target parses a request's fields with the same class,
which checks every value (type and range) before a handler sees it, so a
hostile peer meets a StreamError, never a KeyError or an unbounded size.

Paths travel as hex so that any bytes a file system allows survive JSON."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from dtcore.errors import StreamError

# Bytes in one read reply, and checksums (8 bytes each) in one sums reply.
MAX_READ = 8 << 20
MAX_BLOCK = 1 << 20
MAX_HASH_BELOW = 1 << 30
# Blocks in one signature reply (16 bytes each): a larger file asks with
# larger blocks, or is compared block by block instead.
MAX_SIGNATURE_BLOCKS = 1 << 20
_MAX_OFFSET = 1 << 62

Fields = dict[str, Any]
# The target data states (a StateRequest sets one, replies tell one).
OK, MIRRORING, MIRROR_REQUIRED, RESTORE_REQUIRED = "OK", "Mirroring", "Mirror Required", "Restore Required"
DATA_STATES = (OK, MIRRORING, MIRROR_REQUIRED, RESTORE_REQUIRED)
# The field of a REQUEST frame's JSON that names its method.
METHOD_FIELD = "method"


def _int(fields: Fields, key: str, low: int = 0, high: int = _MAX_OFFSET,
         default: int | None = None) -> int:
    value = fields.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise StreamError(f"field {key}={value!r} is out of range")
    return value


def _text(fields: Fields, key: str, default: str = "") -> str:
    value = fields.get(key, default)
    if not isinstance(value, str):
        raise StreamError(f"field {key} is not text")
    return value


def _hex(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise StreamError(f"{what} is missing or not text")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise StreamError(f"{what} is not hex") from None


# -- the handshake ---------------------------------------------------------
@dataclass(frozen=True)
class Hello:
    """What a source asks for in its HELLO, besides the handshake's own
    versions, nonce and frame size."""

    target_path: str = ""
    repset: str = ""
    compress: bool = False
    # the same for every connection of one source connection object, its
    # reconnects included: the target tells a returning source from another
    source: str = ""

    def fields(self) -> Fields:
        return {"target_path": self.target_path, "repset": self.repset, "compress": self.compress,
                "source": self.source}

    @classmethod
    def parse(cls, fields: Fields) -> "Hello":
        return cls(_text(fields, "target_path"), _text(fields, "repset"),
                   fields.get("compress") is True, _text(fields, "source")[:64])


@dataclass(frozen=True)
class Welcome:
    """What the target tells an admitted source: its target path's data state."""

    state: str = ""
    target: str = ""

    def fields(self) -> Fields:
        return {"state": self.state, "target": self.target}

    @classmethod
    def parse(cls, fields: Fields) -> "Welcome":
        return cls(str(fields.get("state", "")), str(fields.get("target", "")))


@dataclass(frozen=True)
class Flow:
    """A FLOW frame: the target asks the source to pause its mirror frames
    (code -147) or to resume them (-148)."""

    pause: bool
    code: int = 0

    def fields(self) -> Fields:
        return {"pause": self.pause, "code": self.code}

    @classmethod
    def parse(cls, fields: Fields) -> "Flow":
        return cls(fields.get("pause") is True, _int(fields, "code", -1 << 31, 1 << 31, 0))


@dataclass(frozen=True)
class OpFailure:
    """An op the target cannot apply: its path, the guide's code (-173 for a
    full disk), the errno and the reason in words."""

    path: bytes
    code: int
    errno: int
    reason: str

    def fields(self) -> Fields:
        return {"path": self.path.hex(), "code": self.code, "errno": self.errno,
                "reason": self.reason}

    @classmethod
    def parse(cls, fields: Fields) -> "OpFailure":
        return cls(_hex(fields.get("path"), "failed op's path"), _int(fields, "code", -1 << 31, 0),
                   _int(fields, "errno", 0, 1 << 16, 0), _text(fields, "reason"))


@dataclass(frozen=True)
class Ack:
    """An ACK frame's body when some acknowledged ops were given up, or when
    ops sent during a mirror found nothing at their path (the common ACK has
    no body).  The source must not count dropped ops as applied; a missed
    name (the new name of a rename, the path of any other op but a removal)
    may need the mirror to bring it.  ``more_missed``: names were left out
    past :data:`MAX_MISSED`."""

    dropped: tuple[OpFailure, ...] = ()
    missed: tuple[bytes, ...] = ()
    more_missed: bool = False

    MAX_MISSED = 256

    def fields(self) -> Fields:
        out: Fields = {"dropped": [d.fields() for d in self.dropped]}
        if self.missed or self.more_missed:
            out["missed"] = [p.hex() for p in self.missed]
            out["more_missed"] = self.more_missed
        return out

    @classmethod
    def parse(cls, fields: Fields) -> "Ack":
        dropped = fields.get("dropped", [])
        if not isinstance(dropped, list) or not all(isinstance(d, dict) for d in dropped):
            raise StreamError("ACK lacks its list of dropped ops")
        missed = fields.get("missed", [])
        if not isinstance(missed, list) or len(missed) > cls.MAX_MISSED:
            raise StreamError(f"ACK's missed names are not a list of at most {cls.MAX_MISSED}")
        more = fields.get("more_missed", False)
        if not isinstance(more, bool):
            raise StreamError("ACK's more_missed is not true or false")
        return cls(tuple(OpFailure.parse(d) for d in dropped),
                   tuple(_hex(p, "missed name") for p in missed), more)


@dataclass(frozen=True)
class Notice:
    """A NOTICE frame: the target is retrying an op it cannot apply yet
    (TGRetryLocked, TGExecutionRetryLimit), so the source knows why nothing
    is acknowledged."""

    failure: OpFailure
    retries: int

    def fields(self) -> Fields:
        return {**self.failure.fields(), "retries": self.retries}

    @classmethod
    def parse(cls, fields: Fields) -> "Notice":
        return cls(OpFailure.parse(fields), _int(fields, "retries", default=0))


# -- requests ----------------------------------------------------------------
class Request:
    """A request's method name and its fields."""

    METHOD: ClassVar[str]

    def fields(self) -> Fields:
        raise NotImplementedError


@dataclass(frozen=True)
class ManifestRequest(Request):
    """The target's listing of its path: ``offset`` 0 starts a new walk, and
    the byte count received so far asks for its next part.  Files under
    ``hash_below`` bytes are hashed while listed."""

    METHOD: ClassVar[str] = "manifest"
    hash_below: int = 0
    offset: int = 0

    def fields(self) -> Fields:
        return {"hash_below": self.hash_below, "offset": self.offset}

    @classmethod
    def parse(cls, fields: Fields) -> "ManifestRequest":
        return cls(_int(fields, "hash_below", 0, MAX_HASH_BELOW, 0), _int(fields, "offset", default=0))


@dataclass(frozen=True)
class SumsRequest(Request):
    """Checksums of ``count`` blocks of ``block`` bytes from block ``first``."""

    METHOD: ClassVar[str] = "sums"
    path: bytes
    first: int
    count: int
    block: int

    def fields(self) -> Fields:
        return {"path": self.path.hex(), "first": self.first, "count": self.count, "block": self.block}

    @classmethod
    def parse(cls, fields: Fields) -> "SumsRequest":
        return cls(_hex(fields.get("path"), "request path"), _int(fields, "first"),
                   _int(fields, "count", 1, MAX_READ // 8), _int(fields, "block", 1, MAX_BLOCK))


@dataclass(frozen=True)
class SignatureRequest(Request):
    """The rolling and strong sums of a file's blocks (for a rolling delta)."""

    METHOD: ClassVar[str] = "signature"
    path: bytes
    block: int

    def fields(self) -> Fields:
        return {"path": self.path.hex(), "block": self.block}

    @classmethod
    def parse(cls, fields: Fields) -> "SignatureRequest":
        return cls(_hex(fields.get("path"), "request path"), _int(fields, "block", 1, MAX_BLOCK))


@dataclass(frozen=True)
class ReadRequest(Request):
    """``length`` bytes of a file from ``offset`` (for a restore)."""

    METHOD: ClassVar[str] = "read"
    path: bytes
    offset: int
    length: int

    def fields(self) -> Fields:
        return {"path": self.path.hex(), "offset": self.offset, "length": self.length}

    @classmethod
    def parse(cls, fields: Fields) -> "ReadRequest":
        return cls(_hex(fields.get("path"), "request path"), _int(fields, "offset"),
                   _int(fields, "length", 0, MAX_READ))


@dataclass(frozen=True)
class _PathRequest(Request):
    """A request about one entry, named by its path."""

    path: bytes

    def fields(self) -> Fields:
        return {"path": self.path.hex()}

    @classmethod
    def parse(cls, fields: Fields) -> Any:
        return cls(_hex(fields.get("path"), "request path"))


@dataclass(frozen=True)
class ReadlinkRequest(_PathRequest):
    """A symlink's text (for a restore)."""

    METHOD: ClassVar[str] = "readlink"


@dataclass(frozen=True)
class LinksRequest(Request):
    """The target path's hard links (for a restore): reply data holds each
    group of names of one file, each name ended by a NUL and each group by
    one more."""

    METHOD: ClassVar[str] = "links"

    def fields(self) -> Fields:
        return {}

    @classmethod
    def parse(cls, fields: Fields) -> "LinksRequest":
        return cls()


@dataclass(frozen=True)
class XattrsRequest(_PathRequest):
    """An entry's extended attributes, packed as an XATTR op's data (for a
    restore with ExtendedAttributes)."""

    METHOD: ClassVar[str] = "xattrs"


@dataclass(frozen=True)
class OrphansRequest(Request):
    """Remove these paths.  Whether they are moved instead, and where to, is
    the target's own decision (its MoveOrphanedFiles and MoveOrphansDir):
    no peer can send files to a folder outside the target path."""

    METHOD: ClassVar[str] = "orphans"
    paths: tuple[bytes, ...]

    def fields(self) -> Fields:
        return {"paths": [p.hex() for p in self.paths]}

    @classmethod
    def parse(cls, fields: Fields) -> "OrphansRequest":
        paths = fields.get("paths")
        if not isinstance(paths, list):
            raise StreamError("orphans request lacks its list of paths")
        return cls(tuple(_hex(p, "orphan path") for p in paths))


@dataclass(frozen=True)
class StateRequest(Request):
    """The target path's data state; with ``set``, change it first."""

    METHOD: ClassVar[str] = "state"
    set: str | None = None
    reason: str = ""

    def fields(self) -> Fields:
        out: Fields = {"reason": self.reason}
        if self.set is not None:
            out["set"] = self.set
        return out

    @classmethod
    def parse(cls, fields: Fields) -> "StateRequest":
        new = fields.get("set")
        if new is not None and not isinstance(new, str):
            raise StreamError("state request's new state is not text")
        return cls(new, str(fields.get("reason", "")))


@dataclass(frozen=True)
class RootRequest(Request):
    """Give the target path's own folder these attributes (a packed SETATTR
    payload; empty: leave them): no op can name that folder, and a mirror
    sets it last.  The reply's data is the folder's attributes after that
    (a restore gives them to its destination)."""

    METHOD: ClassVar[str] = "root_attributes"
    attrs: bytes = b""

    def fields(self) -> Fields:
        return {"attrs": self.attrs.hex()}

    @classmethod
    def parse(cls, fields: Fields) -> "RootRequest":
        return cls(_hex(fields.get("attrs"), "root attributes"))


@dataclass(frozen=True)
class ReplicationStart(Request):
    """A replication (re)starts on this connection: ``source`` is its lasting
    identity (32 hex digits), by which the target finds the last batch it
    applied from it."""

    METHOD: ClassVar[str] = "replication_start"
    source: str

    def fields(self) -> Fields:
        return {"source": self.source}

    @classmethod
    def parse(cls, fields: Fields) -> "ReplicationStart":
        source = _text(fields, "source")
        if len(source) != 32 or any(c not in "0123456789abcdef" for c in source):
            raise StreamError("a replication's source identity is 32 hex digits")
        return cls(source)


@dataclass(frozen=True)
class TimersRequest(Request):
    """What the target has spent on this session so far (a profile asks
    before and after).  The request's data, which the target reads and
    drops, times the link from source to target."""

    METHOD: ClassVar[str] = "timers"

    def fields(self) -> Fields:
        return {}

    @classmethod
    def parse(cls, fields: Fields) -> "TimersRequest":
        return cls()


REQUESTS: dict[str, type[Request]] = {cls.METHOD: cls for cls in (
    ManifestRequest, SumsRequest, SignatureRequest, ReadRequest, ReadlinkRequest, XattrsRequest,
    LinksRequest, OrphansRequest, StateRequest, RootRequest, ReplicationStart, TimersRequest)}


# -- replies -----------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    """A reply with no fields of its own (readlink: the text is the data)."""

    def fields(self) -> Fields:
        return {}


@dataclass(frozen=True)
class ManifestReply(Reply):
    """The data is the listing's next part, from the request's offset;
    ``more``: whether another part follows."""

    more: bool

    def fields(self) -> Fields:
        return {"more": self.more}

    @classmethod
    def parse(cls, fields: Fields) -> "ManifestReply":
        more = fields.get("more")
        if not isinstance(more, bool):
            raise StreamError(f"manifest reply field 'more' must be true or false, not {more!r}")
        return cls(more)


@dataclass(frozen=True)
class FileReply(Reply):
    """The target copy's size (-1: there is none) for sums and read; the data
    is the checksums or the bytes."""

    size: int

    def fields(self) -> Fields:
        return {"size": self.size}

    @classmethod
    def parse(cls, fields: Fields) -> "FileReply":
        return cls(_int(fields, "size", -1, default=-1))


@dataclass(frozen=True)
class SignatureReply(Reply):
    """The copy's size (-1: none) and block count; the data is ``blocks``
    rolling sums then ``blocks`` strong sums, 8 bytes each."""

    size: int
    blocks: int = 0

    def fields(self) -> Fields:
        return {"size": self.size, "blocks": self.blocks}

    @classmethod
    def parse(cls, fields: Fields) -> "SignatureReply":
        return cls(_int(fields, "size", -1, default=-1), _int(fields, "blocks", default=0))


@dataclass(frozen=True)
class OrphansReply(Reply):
    """What the target removed; ``moved``: it moved them to its
    MoveOrphansDir rather than deleting them."""

    files: int = 0
    directories: int = 0
    bytes: int = 0
    moved: bool = False

    def fields(self) -> Fields:
        return {"files": self.files, "directories": self.directories, "bytes": self.bytes,
                "moved": self.moved}

    @classmethod
    def parse(cls, fields: Fields) -> "OrphansReply":
        return cls(_int(fields, "files", default=0), _int(fields, "directories", default=0),
                   _int(fields, "bytes", default=0), fields.get("moved") is True)


@dataclass(frozen=True)
class StateReply(Reply):
    state: str

    def fields(self) -> Fields:
        return {"state": self.state}

    @classmethod
    def parse(cls, fields: Fields) -> "StateReply":
        return cls(_text(fields, "state"))


@dataclass(frozen=True)
class TimersReply(Reply):
    """The target's work for one session: per stage (manifest, sums,
    signature) its seconds, calls and bytes read, in ``stages``; the target
    process's CPU seconds (all of its sessions) in ``cpu``; and the seconds
    and count of every data-state save since it started (synced writes a
    mirror makes twice), in ``state_writes``."""

    stages: dict[str, tuple[float, int, int]]
    cpu: float
    state_writes: tuple[float, int] = (0.0, 0)

    def fields(self) -> Fields:
        return {"stages": {k: list(v) for k, v in self.stages.items()}, "cpu": self.cpu,
                "state_writes": list(self.state_writes)}

    @classmethod
    def parse(cls, fields: Fields) -> "TimersReply":
        stages = fields.get("stages")
        cpu = fields.get("cpu")
        if not isinstance(stages, dict) or not isinstance(cpu, (int, float)):
            raise StreamError("timers reply lacks its stages or CPU time")
        out: dict[str, tuple[float, int, int]] = {}
        for name, value in stages.items():
            if not (isinstance(value, list) and len(value) == 3 and
                    all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)):
                raise StreamError(f"timers reply's stage {name!r} is not [seconds, calls, bytes]")
            out[str(name)] = (float(value[0]), int(value[1]), int(value[2]))
        writes = fields.get("state_writes", [0.0, 0])
        if not (isinstance(writes, list) and len(writes) == 2 and
                all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in writes)):
            raise StreamError("timers reply's state_writes is not [seconds, count]")
        return cls(out, float(cpu), (float(writes[0]), int(writes[1])))


@dataclass(frozen=True)
class ReplicationStartReply(Reply):
    """The last batch number the target applied from that source (0: none),
    and the target path's data state."""

    applied: int
    state: str

    def fields(self) -> Fields:
        return {"applied": self.applied, "state": self.state}

    @classmethod
    def parse(cls, fields: Fields) -> "ReplicationStartReply":
        return cls(_int(fields, "applied", high=(1 << 64) - 1), _text(fields, "state"))
