"""The target service: listens, admits sources that prove the shared secret and
runs one session per connection beneath its root; stopping it closes them all."""
from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from typing import TYPE_CHECKING

from dtcore.apply import APPLY_THREADS
from dtcore.apply.safe_paths import SafeRoot
from dtcore.control.config import Config
from dtcore.control.events import emit
from dtcore.control.stats import Statistics
from dtcore.errors import (
    ConnectionExistsError,
    DataOverloadError,
    InvalidParameterError,
    ListenFailedError,
)
from dtcore.protocol.handshake import secret_bytes
from dtcore.protocol.tls import self_signed, server_tls
from dtcore.target.applied import AppliedBatches
from dtcore.target.session import Session
from dtcore.target.states import STATE_DIR, DataStates

if TYPE_CHECKING:
    import ssl

# The whole handshake must finish within this many seconds, and at most this
# many connections may be in their handshake at once: unauthenticated peers
# get a small budget of their own, apart from MaxConnections.
HANDSHAKE_TIMEOUT = 10.0
MAX_HANDSHAKES = 16


class Target:
    """A target service on ``host:port`` writing beneath ``root``.

    ``secret`` (or $DTCORE_SECRET) is what sources must prove.  With
    EncryptNetworkData 1 (or ``tls=True``) connections run over TLS, with a
    self-signed certificate made in the state folder unless ``tls`` is a
    (certfile, keyfile) pair.  ``apply_threads`` is how many threads apply
    each connection's ops (ops on different files run at once; see
    :mod:`dtcore.apply.lanes`)."""

    def __init__(self, root: str | os.PathLike[str], *, host: str = "127.0.0.1",
                 port: int | None = None, secret: str | bytes | None = None,
                 config: Config | None = None, stats: Statistics | None = None,
                 tls: bool | tuple[str, str] | None = None,
                 memory_bytes: int | None = None, apply_threads: int = APPLY_THREADS,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT,
                 max_handshakes: int = MAX_HANDSHAKES) -> None:
        self.config = config or Config(None)
        self.root = SafeRoot(root, reserved=STATE_DIR)
        self.state_dir = os.path.join(self.root.path, STATE_DIR.decode())
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        self.states = DataStates(self.state_dir)
        # an acknowledgement promises the page cache (TGWriteCache 1) or the disk
        self.applied = AppliedBatches(os.path.join(self.state_dir, "applied"),
                                      durable=not self.config["TGWriteCache"])
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
        self.handshake_timeout = handshake_timeout
        self.max_handshakes = max_handshakes
        self.memory_bytes = memory_bytes or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        self._sock: socket.socket | None = None
        self._sessions: set[Session] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self.flow_pauses = 0  # times a source was told to pause its mirror

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def sources(self) -> list[dict[str, object]]:
        """Who is connected now: each source's address, target path and that
        path's data state."""
        with self._lock:
            sessions = [s for s in self._sessions if s.authenticated]
        return [{"peer": s.peer, "target_path": "/" + s.path, "data_state": self.states.get(s.path)}
                for s in sorted(sessions, key=lambda s: s.id)]

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
        """The accept loop: no error of one connection (nor running out of
        descriptors, threads or memory for a while) ends it; only stop() does."""
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, peer = self._sock.accept()
            except OSError as e:
                if self._stopping.is_set():
                    return
                emit(6002, detail=f"accepting on {self.host}:{self.port} failed: {e.strerror or e}")
                time.sleep(0.1)
                continue
            try:
                self._start_session(conn, f"{peer[0]}:{peer[1]}")
            except Exception as e:  # noqa: BLE001 - this connection only
                emit(6002, detail=f"connection from {peer[0]}:{peer[1]} dropped: "
                                  f"{type(e).__name__}: {e}")
                conn.close()

    def _start_session(self, conn: socket.socket, peer: str) -> None:
        with self._lock:
            pending = sum(not s.authenticated for s in self._sessions)
            if pending >= self.max_handshakes:
                emit(6002, detail=f"connection from {peer} refused: {pending} handshakes are "
                                  "already under way")
                conn.close()
                return
            session = Session(self, conn, peer, next(self._ids))
            self._sessions.add(session)
        try:
            session.thread = threading.Thread(target=session.run, name=f"dtcore-target-{session.id}",
                                              daemon=True)
            session.thread.start()
        except BaseException:
            self.forget(session)
            raise

    def admit(self, session: "Session") -> None:
        """Count a session that proved the secret among the sources served.
        DataOverloadError when MaxConnections (0: no limit) are served
        already; ConnectionExistsError when another source works on the same
        target path, or one inside or around it (two sources writing one copy
        leave files that are neither's).  The same source connecting again
        (a reconnect the target has not noticed the end of) takes over."""
        limit = self.config["MaxConnections"]
        superseded = []
        with self._lock:
            for other in self._sessions:
                if other is session or not other.authenticated or other.stopping.is_set() or \
                        not _overlap(other.path, session.path):
                    continue
                if session.source_id and other.source_id == session.source_id:
                    superseded.append(other)
                else:
                    raise ConnectionExistsError(
                        f"target path /{other.path} is in use by another source "
                        f"({other.peer}); one source at a time per target path")
            served = sum(s.authenticated for s in self._sessions) - len(superseded)
            if limit and served >= limit:
                raise DataOverloadError(f"the target already serves MaxConnections={limit} "
                                        "sources; try again later")
            session.authenticated = True
            for other in superseded:
                other.authenticated = False
        for other in superseded:
            emit(6001, detail=f"connection {other.label()} is replaced by connection "
                              f"{session.label()} of the same source")
            other.stop()

    def forget(self, session: "Session") -> None:
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
        deadline = time.monotonic() + 10  # each session applies what it holds, then lets go
        for s in sessions:
            if s.thread is not None:
                s.thread.join(max(0.0, deadline - time.monotonic()))
        self.root.close()
        self.applied.close()
        emit(4004)

    def __enter__(self) -> "Target":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _overlap(a: str, b: str) -> bool:
    """Whether target paths ``a`` and ``b`` share files (one holds the other)."""
    return a == b or not a or not b or a.startswith(b + "/") or b.startswith(a + "/")
