"""The target service: admits sources that prove the shared secret, applies
their ops beneath its root in order, answers their questions (manifests,
block checksums, signatures, reads for a restore) and keeps the target data
state of every target path across restarts.

Per connection, a reader thread takes frames off the socket into a native
memory queue and an applier thread applies them and acknowledges; requests
run on two helper threads once every op received before them is applied, so
hashing on the target runs beside applying.  When mirror data waiting in
memory passes ``TGMirrorCapacityHigh`` percent of system memory the source
is told to pause its mirror, and to resume below ``TGMirrorCapacityLow``."""
from __future__ import annotations

import collections
import errno
import itertools
import json
import mmap
import os
import socket
import ssl
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from dtcore._files import replace_whole
from dtcore._native import _checksum, _delta
from dtcore.applier import Applier
from dtcore.compression import Compressor
from dtcore.config import Config
from dtcore.errors import (DTError, InvalidParameterError, InvalidPathError, ListenFailedError,
                           QueueClosedError, StreamError)
from dtcore.events import emit
from dtcore.ops import unpack_batch
from dtcore.queues import MB, MIRROR, REPLICATION, MemoryQueue
from dtcore.stats import Statistics
from dtcore.tree import SafeRoot, check_path
from dtcore.wire import ACK, FLAG_MIRROR, FLOW, Channel, server_handshake, server_tls, self_signed
from dtcore.wire import secret_bytes, tune_socket
from dtcore.lanes import Lanes
from dtcore.link import Link
from dtcore.manifest import Listing

OK, MIRRORING, MIRROR_REQUIRED, RESTORE_REQUIRED = "OK", "Mirroring", "Mirror Required", "Restore Required"
DATA_STATES = (OK, MIRRORING, MIRROR_REQUIRED, RESTORE_REQUIRED)
STATE_DIR = b".dtcore"  # the target's own folder beneath its root, never replicated into
_MAX_READ = 8 << 20
# A manifest larger than this goes in several replies (a reply is one frame).
MANIFEST_PART = 16 << 20
# Lanes applying one connection's ops: file creation is kernel work that two
# cores share well, and a lane waiting on the disk leaves the core to another.
APPLY_THREADS = 4


class DataStates:
    """The target data state of each target path, kept in ``state.json``."""

    def __init__(self, directory: str) -> None:
        self.file = os.path.join(directory, "state.json")
        self._lock = threading.Lock()
        try:
            with open(self.file) as f:
                loaded = json.load(f)
            self._states = {k: v for k, v in loaded.items() if v in DATA_STATES}
        except (OSError, ValueError):
            self._states = {}

    def get(self, path: str) -> str:
        with self._lock:
            return self._states.get(path, MIRROR_REQUIRED)

    def set(self, path: str, state: str, reason: str = "") -> None:
        if state not in DATA_STATES:
            raise InvalidParameterError(f"{state!r} is not a target data state")
        with self._lock:
            if self._states.get(path) == state:
                return
            self._states[path] = state
            replace_whole(self.file, json.dumps(self._states).encode())
        emit(4065, conn=f"for target path /{path}", reason=f"now {state}" + (f" ({reason})" if reason else ""))


class Target:
    """A target service on ``host:port`` writing beneath ``root``.

    ``secret`` (or $DTCORE_SECRET) is what sources must prove.  With
    EncryptNetworkData 1 (or ``tls=True``) connections run over TLS, with a
    self-signed certificate made in the state folder unless ``tls`` is a
    (certfile, keyfile) pair.  ``apply_threads`` is how many threads apply
    each connection's ops (ops on different files run at once; see
    :mod:`dtcore.lanes`)."""

    def __init__(self, root: str | os.PathLike[str], *, host: str = "127.0.0.1",
                 port: int | None = None, secret: str | bytes | None = None,
                 config: Config | None = None, stats: Statistics | None = None,
                 tls: bool | tuple[str, str] | None = None,
                 memory_bytes: int | None = None, apply_threads: int = APPLY_THREADS) -> None:
        self.config = config or Config(None)
        self.root = SafeRoot(root, reserved=STATE_DIR)
        self.state_dir = os.path.join(self.root.path, STATE_DIR.decode())
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        self.states = DataStates(self.state_dir)
        self.secret = secret_bytes(secret)
        self.stats = stats or Statistics()
        self.host = host
        self.port = self.config["NetPort"] if port is None else port
        if tls is None:
            tls = bool(self.config["EncryptNetworkData"])
        self._tls: ssl.SSLContext | None = None
        if tls:
            cert, key = tls if isinstance(tls, tuple) else self_signed(self.state_dir)
            self._tls = server_tls(cert, key)
        if apply_threads < 1:
            raise InvalidParameterError(f"apply_threads={apply_threads} must be at least 1")
        self.apply_threads = apply_threads
        self.memory_bytes = memory_bytes or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        self._sock: socket.socket | None = None
        self._sessions: set[_Session] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self.flow_pauses = 0  # times a source was told to pause its mirror

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def start(self) -> "Target":
        """Listen and serve in background threads (event 4001)."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(64)
        except OSError as e:
            sock.close()
            emit(4046, detail=f"{self.host}:{self.port}: {e.strerror}")
            raise ListenFailedError(f"cannot listen on {self.host}:{self.port}: {e.strerror}") from None
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._thread = threading.Thread(target=self._accept, name="dtcore-target", daemon=True)
        self._thread.start()
        emit(4001)
        return self

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, peer = self._sock.accept()
            except OSError:
                return
            session = _Session(self, conn, f"{peer[0]}:{peer[1]}", next(self._ids))
            with self._lock:
                self._sessions.add(session)
            threading.Thread(target=session.run, name=f"dtcore-target-{session.id}",
                             daemon=True).start()

    def forget(self, session: "_Session") -> None:
        with self._lock:
            self._sessions.discard(session)

    @property
    def sessions(self) -> int:
        with self._lock:
            return len(self._sessions)

    def stop(self) -> None:
        """Stop listening and close every connection (event 4004)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
        with self._lock:
            sessions = list(self._sessions)
        for s in sessions:
            s.stop()
        if self._thread is not None:
            self._thread.join(5)
        self.root.close()
        emit(4004)

    def __enter__(self) -> "Target":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Session:
    """One source connected to the target."""

    def __init__(self, target: Target, sock: socket.socket, peer: str, conn_id: int) -> None:
        self.target = target
        self.sock = sock
        self.peer = peer
        self.id = conn_id
        self.counters = target.stats.target(peer, f"{target.host}:{target.port}")
        self.link: Link | None = None
        self.root: SafeRoot | None = None
        self.path = ""
        self.stopping = threading.Event()
        cfg = target.config
        self.queue = MemoryQueue(min(cfg["QMemoryBufferMax"], 64) * MB, cfg["OpBufferSize"])
        self._high = target.memory_bytes * cfg["TGMirrorCapacityHigh"] // 100
        self._low = target.memory_bytes * min(cfg["TGMirrorCapacityLow"], cfg["TGMirrorCapacityHigh"]) // 100
        self._paused = False
        self._flow = threading.Lock()
        self._received = 0
        self._applied = 0
        # the frame number of each record in the queue, in queue order (one
        # reader appends, one applier takes): the body goes in uncopied
        self._seqs: collections.deque[int] = collections.deque()
        self._cv = threading.Condition()
        self._helpers = ThreadPoolExecutor(2, thread_name_prefix=f"dtcore-target-{conn_id}-rq")
        self._views = threading.local()  # each request thread's clone of the root
        self.listing = b""  # the last manifest walked, sent part by part
        self._clones: list[SafeRoot] = []
        self.gave_up = False

    def label(self) -> str:
        return f"from {self.peer} (connection {self.id})"

    def run(self) -> None:
        cfg = self.target.config
        try:
            tune_socket(self.sock, cfg["NetworkTimeout"], cfg["TCPBufferSize"])
            self.sock.settimeout(30)  # the handshake must finish in time
            sock = self.sock
            if self.target._tls is not None:
                sock = self.target._tls.wrap_socket(sock, server_side=True)
            ch = Channel(sock)
            hello = server_handshake(ch, self.target.secret, self._welcome)
            if hello.get("compress") is True:  # replies (manifests, checksums) too
                ch.compressor = Compressor(max_payload=ch.max_frame)
            sock.settimeout(None)
        except (DTError, OSError, ValueError) as e:
            if isinstance(e, DTError) and e.code == -138:
                self.target.stats.server.add("FailedLogins")
            emit(6002, detail=f"connection {self.label()} refused: {e}")
            self.sock.close()
            self.target.forget(self)
            return
        self.target.stats.server.add("Logins")
        emit(4016, conn=self.label())
        self.link = Link(ch, f"source {self.peer}", heartbeat=cfg["HBExternalRate"], ttl=cfg["HBTTL"],
                         on_ops=self._on_ops, on_request=self._on_request, on_close=self._on_close)
        applier = threading.Thread(target=self._apply_loop, name=f"dtcore-apply-{self.id}", daemon=True)
        applier.start()
        self.link.start()
        applier.join()
        self._helpers.shutdown(wait=True)
        for root in self._clones:
            root.close()
        self.root.close()

    def _welcome(self, hello: dict[str, Any]) -> dict[str, Any]:
        path = hello.get("target_path", "")
        if not isinstance(path, str):
            raise StreamError("HELLO target_path is not text")
        path = path.strip("/")
        if path:
            check_path(os.fsencode(path), STATE_DIR)
        self.path = path
        self.root = self.target.root.sub(os.fsencode(path))
        return {"state": self.target.states.get(path), "target": self.target.host}

    # -- reader thread -----------------------------------------------------
    def _on_ops(self, seq: int, flags: int, body: Any) -> None:
        kind = MIRROR if flags & FLAG_MIRROR else REPLICATION
        info = _count_ops(body)
        with self._cv:
            self._received = seq
        self.counters.add("Ops Received", info)
        if kind == MIRROR:
            self.counters.add("Mirror Ops Received", info)
        self._seqs.append(seq)  # before the push, so the applier always finds it
        if not self.queue.push([body], info, kind):
            raise StreamError("the target queue is closed")
        if kind == MIRROR:
            self._flow_check()

    def _flow_check(self) -> None:
        """Pause the source's mirror above TGMirrorCapacityHigh, resume it at
        or below TGMirrorCapacityLow.  The reader and the applier both call
        this; under one lock the queue is read where the decision is made, so
        a pause can never follow the applier's last look at a drained queue."""
        assert self.link is not None
        with self._flow:
            queued = self.queue.counts()["mir_bytes"]
            if not self._paused and queued > self._high:
                self._paused = True
                self.target.flow_pauses += 1
                self.link.send_json(FLOW, {"pause": True, "code": -147})
            elif self._paused and queued <= self._low:
                self._paused = False
                self.link.send_json(FLOW, {"pause": False, "code": -148})

    # -- applier thread ----------------------------------------------------
    def _apply_loop(self) -> None:
        cfg = self.target.config
        move = None
        if cfg["TGMoveFilesOnDelete"] and cfg["TGMoveFilesPath"]:
            move = SafeRoot(cfg["TGMoveFilesPath"])
        assert self.root is not None and self.link is not None
        applier = Lanes(self.root, lambda root: Applier(
            root, self.counters, retry_delay=cfg["TGRetryLocked"],
            retry_limit=cfg["TGExecutionRetryLimit"], move_deleted_to=move,
            stopping=self.stopping, on_gave_up=self._gave_up), self.target.apply_threads)
        try:
            while True:
                try:
                    records = self.queue.pop(64, timeout=None, max_bytes=16 * MB, batch=True)
                except QueueClosedError:
                    break  # closed and drained
                last = 0
                for record in records:
                    last = self._seqs.popleft()
                    applier.apply(unpack_batch(record))
                with self._cv:
                    self._applied = last
                    self._cv.notify_all()
                counts = self.queue.counts()
                self.counters["Bytes In Target Queue"] = counts["rep_bytes"] + counts["mir_bytes"]
                self.counters["Ops Remaining"] = counts["rep_ops"] + counts["mir_ops"]
                self._flow_check()
                self.link.send(ACK, seq=last)
        except (InvalidPathError, StreamError) as e:
            emit(6002, detail=f"op {self.label()} refused: {e}")
            self.link.ch.refuse(e)
            self.link.fail(e)
        except DTError as e:
            self.link.fail(e)
        except OSError as e:
            emit(6002, detail=f"applying ops {self.label()} failed: {e}")
            self.link.fail(e)
        except Exception as e:  # a bug: say so, instead of the closed queue it leaves
            emit(6002, detail=f"applying ops {self.label()} failed: {type(e).__name__}: {e}")
            self.link.fail(e)
            raise
        finally:
            applier.close()
            if move is not None:
                move.close()
            self.queue.close()
            with self._cv:
                self._applied = -1
                self._cv.notify_all()

    def _gave_up(self, detail: str) -> None:
        self.gave_up = True
        self.target.states.set(self.path, MIRROR_REQUIRED, f"an op was dropped: {detail}")

    # -- requests ----------------------------------------------------------
    def _on_request(self, req_id: int, params: dict[str, Any], data: memoryview) -> None:
        with self._cv:
            barrier = self._received
        self._helpers.submit(self._serve, req_id, params, bytes(data), barrier)

    def _serve(self, req_id: int, params: dict[str, Any], data: bytes, barrier: int) -> None:
        assert self.link is not None
        with self._cv:
            self._cv.wait_for(lambda: self._applied >= barrier or self._applied < 0)
        self.view().refresh()
        try:
            method = params.get("method")
            handler = _HANDLERS.get(method) if isinstance(method, str) else None
            if handler is None:
                raise StreamError(f"unknown request {method!r}")
            fields, out = handler(self, params, data)
            self.link.reply(req_id, fields, out)
        except DTError as e:
            if isinstance(e, (InvalidPathError, StreamError)):
                emit(6002, detail=f"request {self.label()} refused: {e}")
            try:
                self.link.reply_error(req_id, e)
            except DTError:
                pass
        except (OSError, ValueError, TypeError, KeyError) as e:
            try:
                self.link.reply_error(req_id, InvalidParameterError(f"{params.get('method')}: {e}"))
            except DTError:
                pass

    def view(self) -> SafeRoot:
        """This request thread's own clone of the target path's root."""
        root = getattr(self._views, "root", None)
        if root is None:
            assert self.root is not None
            root = self._views.root = self.root.clone()
            with self._cv:
                self._clones.append(root)
        return root

    def _file(self, params: dict[str, Any]) -> int:
        """Read-only handle of the file a request names, or -1 if missing."""
        try:
            return self.view().open(_path(params), os.O_RDONLY)
        except FileNotFoundError:
            return -1

    def _on_close(self, error: BaseException | None) -> None:
        self.stopping.set()
        self.queue.close()
        emit(4017, conn=self.label())
        self.target.forget(self)

    def stop(self) -> None:
        self.stopping.set()
        if self.link is not None:
            self.link.close()
        else:
            try:
                self.sock.close()
            except OSError:
                pass
        self._helpers.shutdown(wait=False, cancel_futures=True)


def _count_ops(body: Any) -> int:
    """The op count from a batch header (the full check runs when applied)."""
    view = memoryview(body)
    if len(view) < 16:
        raise StreamError(f"op batch of {len(view)} bytes is shorter than its header")
    return int.from_bytes(view[8:12], "little")


def _path(params: dict[str, Any]) -> bytes:
    value = params.get("path")
    if not isinstance(value, str):
        raise StreamError("request lacks its path")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise StreamError("request path is not hex") from None


def _int(params: dict[str, Any], key: str, low: int = 0, high: int = 1 << 62,
         default: int | None = None) -> int:
    value = params.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise StreamError(f"request field {key}={value!r} is out of range")
    return value


# -- request handlers: (session, params, data) -> (reply fields, reply data) --
def _manifest(s: _Session, params: dict[str, Any], data: bytes) -> tuple[dict[str, Any], Any]:
    root = s.view()
    skip = STATE_DIR if root.path == s.target.root.path else None
    hash_below = params.get("hash_below", 0)
    if not isinstance(hash_below, int) or not 0 <= hash_below <= 1 << 30:
        raise StreamError(f"hash_below={hash_below!r} is out of range")
    offset = _int(params, "offset", default=0)
    if offset == 0:  # a new listing; the source asks for the rest part by part
        s.listing = Listing.walk(root.fd, skip, hash_below).data
    elif offset > len(s.listing):
        raise StreamError(f"manifest offset {offset} is past its end ({len(s.listing)} bytes)")
    return {"total": len(s.listing)}, memoryview(s.listing)[offset:offset + MANIFEST_PART]


def _sums(s: _Session, params: dict[str, Any], data: bytes) -> tuple[dict[str, Any], Any]:
    block = _int(params, "block", 1, 1 << 20)
    first = _int(params, "first")
    count = _int(params, "count", 1, _MAX_READ // 8)
    fd = s._file(params)
    if fd < 0:
        return {"size": -1}, b""
    try:
        size = os.fstat(fd).st_size
        offset = min(first * block, size)
        length = min(count * block, size - offset)
        sums = _checksum.fd_checksums(fd, offset, length, block, "target file") if length else \
            np.zeros(0, np.uint64)
        return {"size": size}, sums.tobytes()
    finally:
        os.close(fd)


def _signature(s: _Session, params: dict[str, Any], data: bytes) -> tuple[dict[str, Any], Any]:
    block = _int(params, "block", 1, 1 << 20)
    fd = s._file(params)
    if fd < 0:
        return {"size": -1}, b""
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            weak = strong = np.zeros(0, np.uint64)
        else:
            with mmap.mmap(fd, size, prot=mmap.PROT_READ) as m:
                weak, strong = _delta.signature(memoryview(m), block)
        return {"size": size, "blocks": len(strong)}, weak.tobytes() + strong.tobytes()
    finally:
        os.close(fd)


def _read(s: _Session, params: dict[str, Any], data: bytes) -> tuple[dict[str, Any], Any]:
    offset = _int(params, "offset")
    length = _int(params, "length", 0, _MAX_READ)
    fd = s._file(params)
    if fd < 0:
        return {"size": -1}, b""
    try:
        return {"size": os.fstat(fd).st_size}, os.pread(fd, length, offset)
    finally:
        os.close(fd)


def _readlink(s: _Session, params: dict[str, Any], data: bytes) -> tuple[dict[str, Any], Any]:
    dfd, name = s.view().parent(_path(params))
    return {}, os.readlink(name, dir_fd=dfd)


def _orphans(s: _Session, params: dict[str, Any], data: bytes) -> tuple[dict[str, Any], Any]:
    """Remove (or move to MoveOrphansDir) the listed paths, deepest first."""
    root = s.view()
    paths = params.get("paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise StreamError("orphans request lacks its list of paths")
    move_to = s.target.config["MoveOrphansDir"] if params.get("move") else None
    mover = SafeRoot(move_to) if move_to else None
    files = dirs = size = 0
    try:
        for path in sorted((bytes.fromhex(p) for p in paths), key=lambda p: -p.count(b"/")):
            dfd, name = root.parent(path)
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
    return {"files": files, "directories": dirs, "bytes": size}, b""


def _state(s: _Session, params: dict[str, Any], data: bytes) -> tuple[dict[str, Any], Any]:
    new = params.get("set")
    if new is not None:
        if new not in DATA_STATES:
            raise StreamError(f"{new!r} is not a target data state")
        if not (new == OK and s.gave_up):  # a dropped op keeps Mirror Required
            s.target.states.set(s.path, new, str(params.get("reason", "")))
    return {"state": s.target.states.get(s.path)}, b""


_HANDLERS = {"manifest": _manifest, "sums": _sums, "signature": _signature, "read": _read,
             "readlink": _readlink, "orphans": _orphans, "state": _state}
