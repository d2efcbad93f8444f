"""The questions a source asks the target: manifests, block checksums,
signatures, reads and link texts for a restore, orphan removal and the data
state.  Each handler takes (session, request, data) and returns the reply
and its data; the request's class in :mod:`dtcore.protocol.messages` has
checked every field from the peer before the handler runs."""
from __future__ import annotations

import errno
import mmap
import os
import stat
import struct
import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from dtcore._native import _checksum, _delta
from dtcore.apply.applier import Applier
from dtcore.apply.safe_paths import SafeRoot
from dtcore.errors import InvalidParameterError, InvalidPathError, StreamError
from dtcore.model import xattrs
from dtcore.model.manifest import KIND_FILE, Listing, Parts
from dtcore.model.ops import Attrs
from dtcore.model.paths import check_path
from dtcore.protocol.messages import (
    DATA_STATES,
    MAX_SIGNATURE_BLOCKS,
    OK,
    FileReply,
    LinksRequest,
    ManifestReply,
    ManifestRequest,
    OrphansReply,
    OrphansRequest,
    ReadlinkRequest,
    ReadRequest,
    ReplicationStart,
    ReplicationStartReply,
    Reply,
    RootRequest,
    SignatureReply,
    SignatureRequest,
    StateReply,
    StateRequest,
    SumsRequest,
    TimersReply,
    TimersRequest,
    XattrsRequest,
)
from dtcore.target.states import STATE_DIR

if TYPE_CHECKING:
    from dtcore.target.session import Session

# A manifest is walked and sent in parts of about this many bytes (a reply
# is one frame), so the target never holds a large tree's whole listing.
MANIFEST_PART = 4 << 20
Handler = Callable[["Session", Any, bytes], tuple[Reply, Any]]


# -- request handlers: (session, request, data) -> (reply, reply data) --
def _manifest(s: Session, req: ManifestRequest, data: bytes) -> tuple[Reply, Any]:
    root = s.view()
    skip = STATE_DIR if root.path == s.target.root.path else None
    with s.timers.timed(req.METHOD) as t:
        if req.offset == 0:  # a new listing; the source asks for the rest part by part
            s.manifest = Parts(root.fd, MANIFEST_PART, skip, req.hash_below)
            s.manifest_sent = 0
        elif s.manifest is None or req.offset != s.manifest_sent:
            raise StreamError(f"manifest part asked for at {req.offset}, but "
                              f"{s.manifest_sent} bytes of it were sent")
        part = s.manifest.next().data
        t.nbytes = len(part)
    s.manifest_sent += len(part)
    more = not s.manifest.done
    if not more:
        s.manifest = None
    return ManifestReply(more), part


def _sums(s: Session, req: SumsRequest, data: bytes) -> tuple[Reply, Any]:
    with s.target_file(req.path) as file:
        if file is None:
            return FileReply(-1), b""
        fd, size = file
        offset = min(req.first * req.block, size)
        length = min(req.count * req.block, size - offset)
        with s.timers.timed(req.METHOD, length):
            sums = _checksum.fd_checksums(fd, offset, length, req.block, "target file") \
                if length else np.zeros(0, np.uint64)
        return FileReply(size), sums.tobytes()


def _signature(s: Session, req: SignatureRequest, data: bytes) -> tuple[Reply, Any]:
    with s.target_file(req.path) as file:
        if file is None:
            return SignatureReply(-1), b""
        fd, size = file
        blocks = -(-size // req.block)
        if blocks > MAX_SIGNATURE_BLOCKS:  # the reply would dwarf the request
            raise InvalidParameterError(
                f"a signature of {blocks} blocks of {req.block} bytes is over the limit of "
                f"{MAX_SIGNATURE_BLOCKS}; ask with blocks of {-(-size // MAX_SIGNATURE_BLOCKS)} "
                "bytes or more")
        if size == 0:
            weak = strong = np.zeros(0, np.uint64)
        else:
            with s.timers.timed(req.METHOD, size), \
                    mmap.mmap(fd, size, prot=mmap.PROT_READ) as m:
                weak, strong = _delta.signature(memoryview(m), req.block)
        return SignatureReply(size, len(strong)), weak.tobytes() + strong.tobytes()


def _read(s: Session, req: ReadRequest, data: bytes) -> tuple[Reply, Any]:
    with s.target_file(req.path) as file:
        if file is None:
            return FileReply(-1), b""
        fd, size = file
        return FileReply(size), os.pread(fd, req.length, req.offset)


def _readlink(s: Session, req: ReadlinkRequest, data: bytes) -> tuple[Reply, Any]:
    dfd, name = s.view().parent(req.path)
    return Reply(), os.readlink(name, dir_fd=dfd)


def _links(s: Session, req: LinksRequest, data: bytes) -> tuple[Reply, Any]:
    """Each file with more than one name beneath the target path: its names,
    in listing order."""
    root = s.view()
    skip = STATE_DIR if root.path == s.target.root.path else None
    listing = Listing.walk(root.fd, skip, 0, ids=True)
    assert listing.ids is not None
    groups: dict[tuple[int, int], list[bytes]] = {}
    kinds, _ = listing.columns()
    for i in np.flatnonzero((listing.ids[:, 2] > 1) & (kinds == KIND_FILE)).tolist():
        ino, dev, _ = listing.ids[i].tolist()
        groups.setdefault((dev, ino), []).append(listing.path(i))
    return Reply(), b"".join(b"".join(p + b"\0" for p in names) + b"\0"
                             for names in groups.values() if len(names) > 1)


def _xattrs(s: Session, req: XattrsRequest, data: bytes) -> tuple[Reply, Any]:
    dfd, name = s.view().parent(req.path)
    return Reply(), xattrs.pack(xattrs.read(b"/proc/self/fd/%d/%s" % (dfd, name)))


def _orphans(s: Session, req: OrphansRequest, data: bytes) -> tuple[Reply, Any]:
    """Remove (or move to MoveOrphansDir) the listed paths, deepest first."""
    root = s.view()
    cfg = s.target.config
    move_to = cfg["MoveOrphansDir"] if cfg["MoveOrphanedFiles"] else None
    mover = SafeRoot(move_to) if move_to else None
    files = dirs = size = 0
    try:
        for path in sorted(req.paths, key=lambda p: -p.count(b"/")):
            check_path(path, STATE_DIR)
            try:
                dfd, name = root.parent(path)
            except InvalidPathError:
                continue  # a file where its folder was: the orphan is gone already
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            try:
                if mover is not None:
                    mdfd, mname = mover.parent(path, create=True)
                    os.rename(name, mname, src_dir_fd=dfd, dst_dir_fd=mdfd)
                elif stat.S_ISDIR(st.st_mode):
                    os.rmdir(name, dir_fd=dfd)
                else:
                    os.unlink(name, dir_fd=dfd)
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    continue  # a folder that still holds protected files stays
                raise
            if stat.S_ISDIR(st.st_mode):
                dirs += 1
            else:
                files += 1
                size += st.st_size
        root.forget()
    finally:
        if mover is not None:
            mover.close()
    s.counters.add("Orphan Files Removed", files)
    s.counters.add("Orphan Directories Removed", dirs)
    s.counters.add("Orphan Bytes Removed", size)
    return OrphansReply(files, dirs, size, mover is not None), b""


def _state(s: Session, req: StateRequest, data: bytes) -> tuple[Reply, Any]:
    if req.set is not None:
        if req.set not in DATA_STATES:
            raise StreamError(f"{req.set!r} is not a target data state")
        if not (req.set == OK and s.gave_up):  # a dropped op keeps Mirror Required
            s.target.states.set(s.path, req.set, req.reason)
    return StateReply(s.target.states.get(s.path)), b""


def _root(s: Session, req: RootRequest, data: bytes) -> tuple[Reply, Any]:
    """The target path's own folder takes the source root's attributes (if
    sent), and tells what it has."""
    fd = s.view().fd
    if req.attrs:
        try:
            attrs = Attrs.unpack(req.attrs)
        except (ValueError, struct.error):
            raise StreamError("root attributes are malformed") from None
        Applier.set_fd_attrs(fd, attrs)
    return Reply(), Attrs.of(os.fstat(fd)).pack()


def _timers(s: Session, req: TimersRequest, data: bytes) -> tuple[Reply, Any]:
    seconds, writes, _ = s.target.states.writes.snapshot().get("save", (0.0, 0, 0))
    return TimersReply(s.timers.snapshot(), time.process_time(), (seconds, writes)), b""


def _replication_start(s: Session, req: ReplicationStart, data: bytes) -> tuple[Reply, Any]:
    """A replication (re)starts: batches up to the last one applied from
    this source are resends from now on, and the first new one may repeat
    a batch half applied when the target last stopped."""
    s.rep_applied = s.target.applied.get(req.source)
    s.rep_source = req.source
    s.replay = True
    return ReplicationStartReply(s.rep_applied, s.target.states.get(s.path)), b""


# Each method's request class (which parses and checks its fields) and handler.
HANDLERS: dict[str, tuple[Any, Handler]] = {
    ManifestRequest.METHOD: (ManifestRequest, _manifest), SumsRequest.METHOD: (SumsRequest, _sums),
    SignatureRequest.METHOD: (SignatureRequest, _signature), ReadRequest.METHOD: (ReadRequest, _read),
    ReadlinkRequest.METHOD: (ReadlinkRequest, _readlink),
    XattrsRequest.METHOD: (XattrsRequest, _xattrs),
    LinksRequest.METHOD: (LinksRequest, _links),
    OrphansRequest.METHOD: (OrphansRequest, _orphans), StateRequest.METHOD: (StateRequest, _state),
    RootRequest.METHOD: (RootRequest, _root),
    ReplicationStart.METHOD: (ReplicationStart, _replication_start),
    TimersRequest.METHOD: (TimersRequest, _timers),
}
