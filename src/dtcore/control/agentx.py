"""AgentX (RFC 2741): the protocol a sub-agent speaks with an SNMP master
agent such as NET-SNMP's snmpd (``master agentx``), and a session that keeps
a read-only registration alive.

The master owns the SNMP port, the communities and the trap sinks; the
sub-agent registers one subtree and answers the Get, GetNext and GetBulk
requests the master forwards for it, and sends Notify PDUs that the master
turns into traps.  No maintained Python AgentX library exists (pyagentx3
was last released in 2023, polls its data on fixed timers from threads and
has no GetBulk; netsnmpagent wraps libnetsnmpagent's C structs through
ctypes and has not been released since 2017), and the read-only part of the
protocol is small, so it is written here.

A :class:`View` is the sub-agent's data at one instant: a sorted list of
OIDs with their typed values, built afresh by the caller's ``view``
function when the last one is older than ``max_age`` seconds, so the many
GetNext requests of one walk see one consistent snapshot."""
from __future__ import annotations

import bisect
import collections
import select
import socket
import struct
import threading
import time
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from dtcore.control.events import log

OID = tuple[int, ...]

# PDU types (RFC 2741 section 6.1)
OPEN, CLOSE, REGISTER, UNREGISTER, GET, GETNEXT, GETBULK, TESTSET, COMMITSET, UNDOSET, \
    CLEANUPSET, NOTIFY, PING, INDEXALLOCATE, INDEXDEALLOCATE, ADDAGENTCAPS, \
    REMOVEAGENTCAPS, RESPONSE = range(1, 19)
# value types (section 5.4)
INTEGER, OCTET_STRING, NULL, OBJECT_IDENTIFIER = 2, 4, 5, 6
IP_ADDRESS, COUNTER32, GAUGE32, TIME_TICKS, OPAQUE, COUNTER64 = 64, 65, 66, 67, 68, 70
NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW = 128, 129, 130
# header flags and the errors a read-only sub-agent gives
_NON_DEFAULT_CONTEXT, _NETWORK_BYTE_ORDER = 0x08, 0x10
NO_ERROR, NOT_WRITABLE = 0, 17
_CLOSE_SHUTDOWN = 5
_HEADER = 20
_INTERNET = (1, 3, 6, 1)
SNMP_TRAP_OID = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)

Value = tuple[int, Any]  # (type, value)


class AgentXError(Exception):
    """A PDU that cannot be decoded, or a master that refused us."""


# -- encoding -----------------------------------------------------------------
def encode_oid(oid: Sequence[int], include: bool = False) -> bytes:
    """An OID, with the 1.3.6.1 prefix folded into the prefix byte as the
    RFC allows."""
    prefix = 0
    if len(oid) > 4 and tuple(oid[:4]) == _INTERNET and 0 < oid[4] < 256:
        prefix, oid = oid[4], oid[5:]
    return struct.pack(f"!BBBx{len(oid)}I", len(oid), prefix, int(include), *oid)


def encode_octets(data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + data + b"\0" * (-len(data) % 4)


def encode_value(oid: Sequence[int], value: Value) -> bytes:
    """One VarBind: type, name and the value in the type's encoding."""
    kind, v = value
    head = struct.pack("!Hxx", kind) + encode_oid(oid)
    if kind == INTEGER:
        return head + struct.pack("!i", v)
    if kind in (COUNTER32, GAUGE32, TIME_TICKS):
        return head + struct.pack("!I", v)
    if kind == COUNTER64:
        return head + struct.pack("!Q", v)
    if kind == OBJECT_IDENTIFIER:
        return head + encode_oid(v)
    if kind in (OCTET_STRING, IP_ADDRESS, OPAQUE):
        return head + encode_octets(v)
    if kind in (NULL, NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW):
        return head
    raise ValueError(f"AgentX value type {kind} is not known")


def encode_pdu(kind: int, session: int, transaction: int, packet: int, payload: bytes) -> bytes:
    return struct.pack("!BBBxIIII", 1, kind, _NETWORK_BYTE_ORDER, session, transaction, packet,
                       len(payload)) + payload


def response_payload(values: Iterable[tuple[OID, Value]], error: int = NO_ERROR,
                     index: int = 0) -> bytes:
    # sysUpTime is the master's to fill in; a sub-agent sends 0
    return struct.pack("!IHH", 0, error, index) + b"".join(encode_value(o, v) for o, v in values)


# -- decoding -------------------------------------------------------------------
class SearchRange(NamedTuple):
    start: OID
    include: bool
    end: OID  # () means no upper bound


class PDU(NamedTuple):
    kind: int
    session: int
    transaction: int
    packet: int
    ranges: list[SearchRange]
    non_repeaters: int = 0
    max_repetitions: int = 0
    error: int = 0


class _Reader:
    def __init__(self, data: bytes, order: str) -> None:
        self.data, self.pos, self.order = data, 0, order

    def take(self, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize(self.order + fmt)
        if self.pos + size > len(self.data):
            raise AgentXError("PDU ends in the middle of a field")
        out = struct.unpack_from(self.order + fmt, self.data, self.pos)
        self.pos += size
        return out

    def oid(self) -> tuple[OID, bool]:
        n, prefix, include = self.take("BBBx")
        subids = self.take(f"{n}I") if n else ()
        return ((*_INTERNET, prefix) if prefix else ()) + tuple(subids), bool(include)

    def octets(self) -> bytes:
        (n,) = self.take("I")
        data = self.data[self.pos:self.pos + n]
        self.pos += n + (-n % 4)
        return data


def decode_header(data: bytes) -> tuple[int, int, int, int, int, int]:
    """(type, flags, session, transaction, packet, payload length)."""
    if len(data) < _HEADER:
        raise AgentXError("short AgentX header")
    version, kind, flags = data[0], data[1], data[2]
    if version != 1:
        raise AgentXError(f"AgentX version {version} is not 1")
    order = "!" if flags & _NETWORK_BYTE_ORDER else "<"
    session, transaction, packet, length = struct.unpack_from(order + "IIII", data, 4)
    return kind, flags, session, transaction, packet, length


def decode_pdu(data: bytes) -> PDU:
    """A whole PDU, header and payload, of the kinds a sub-agent receives."""
    kind, flags, session, transaction, packet, length = decode_header(data)
    r = _Reader(data[_HEADER:_HEADER + length], "!" if flags & _NETWORK_BYTE_ORDER else "<")
    if flags & _NON_DEFAULT_CONTEXT and kind not in (RESPONSE,):
        r.octets()  # we register the default context only
    ranges: list[SearchRange] = []
    non_repeaters = repetitions = error = 0
    if kind == GETBULK:
        non_repeaters, repetitions = r.take("HH")
    if kind in (GET, GETNEXT, GETBULK):
        while r.pos < len(r.data):
            start, include = r.oid()
            end, _ = r.oid()
            ranges.append(SearchRange(start, include, end))
    elif kind == RESPONSE:
        _, error, _ = r.take("IHH")
    return PDU(kind, session, transaction, packet, ranges, non_repeaters, repetitions, error)


# -- the data -----------------------------------------------------------------
class View:
    """Values by OID at one instant, for Get and GetNext."""

    def __init__(self, values: dict[OID, Value], objects: Iterable[OID] = ()) -> None:
        self.oids = sorted(values)
        self.values = values
        # object OIDs known to the MIB, so a Get can tell noSuchObject from noSuchInstance
        self.objects = tuple(objects)

    def get(self, oid: OID) -> Value:
        v = self.values.get(oid)
        if v is not None:
            return v
        known = any(oid[:len(o)] == o for o in self.objects)
        return (NO_SUCH_INSTANCE if known else NO_SUCH_OBJECT, None)

    def next(self, r: SearchRange) -> tuple[OID, Value]:
        """The first OID in the range (at or after its start when ``include``),
        or endOfMibView named by the start."""
        i = (bisect.bisect_left if r.include else bisect.bisect_right)(self.oids, r.start)
        if i < len(self.oids) and (not r.end or self.oids[i] < r.end):
            oid = self.oids[i]
            return oid, self.values[oid]
        return r.start, (END_OF_MIB_VIEW, None)


def answer(pdu: PDU, view: View) -> list[tuple[OID, Value]]:
    """The VarBinds answering a Get, GetNext or GetBulk (section 7.2.3)."""
    if pdu.kind == GET:
        return [(r.start, view.get(r.start)) for r in pdu.ranges]
    if pdu.kind == GETNEXT:
        return [view.next(r) for r in pdu.ranges]
    head, repeat = pdu.ranges[:pdu.non_repeaters], list(pdu.ranges[pdu.non_repeaters:])
    out = [view.next(r) for r in head]
    for _ in range(pdu.max_repetitions if repeat else 0):
        row = [view.next(r) for r in repeat]
        out += row
        if all(v[0] == END_OF_MIB_VIEW for _, v in row):
            break
        repeat = [SearchRange(oid, False, r.end) for (oid, _), r in zip(row, repeat)]
    return out


# -- the session ----------------------------------------------------------------
def _connect(address: str, timeout: float) -> socket.socket:
    """``/path`` or ``unix:/path`` for a local socket, ``tcp:host:port`` or
    ``host:port`` for TCP (snmpd's agentXSocket syntax)."""
    if address.startswith("unix:"):
        address = address[5:]
    if address.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: Any = address
    else:
        host, _, port = address.removeprefix("tcp:").rpartition(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        target = (host or "127.0.0.1", int(port))
    sock.settimeout(timeout)
    try:
        sock.connect(target)
    except OSError:
        sock.close()
        raise
    return sock


class SubAgent:
    """A read-only AgentX sub-agent serving ``subtree`` from ``view()`` and
    forwarding notifications, in a thread of its own.

    It connects to the master at ``address``, registers, and answers until
    stopped; when the master goes away it connects again every few
    seconds, calling ``on_open`` (in its thread) after each registration.
    Notifications sent while there is no session wait in a bounded backlog
    (the oldest are dropped, and counted in ``dropped``) and go out once a
    session is open."""

    BACKLOG = 256
    RETRY_SECONDS = (0.5, 5.0)

    def __init__(self, address: str, subtree: OID, view: Callable[[], View], *,
                 description: str = "dtcore", max_age: float = 1.0, timeout: float = 5.0,
                 on_open: Callable[[], None] = lambda: None) -> None:
        self.address, self.subtree, self._make_view = address, subtree, view
        self.on_open = on_open
        self.description, self.max_age, self.timeout = description, max_age, timeout
        self._view: View | None = None
        self._view_time = 0.0
        self._backlog: collections.deque[list[tuple[OID, Value]]] = \
            collections.deque(maxlen=self.BACKLOG)
        self.dropped = 0
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._session = 0
        self._packet = 0
        self._buffer = b""

    # -- the caller's side ------------------------------------------------------
    def start(self) -> "SubAgent":
        self._thread = threading.Thread(target=self._run, name="dtcore-agentx", daemon=True)
        self._thread.start()
        return self

    def notify(self, trap: OID, values: Sequence[tuple[OID, Value]] = ()) -> None:
        """Send notification ``trap`` with ``values`` (queued; never blocks)."""
        with self._lock:
            if len(self._backlog) == self._backlog.maxlen:
                self.dropped += 1
            self._backlog.append([(SNMP_TRAP_OID, (OBJECT_IDENTIFIER, trap)), *values])
        try:
            self._wake_w.send(b"!")
        except OSError:  # stopped: the backlog is not sent any more
            pass

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued, close the session and end the thread."""
        self._stop.set()
        self._wake_w.send(b"!")
        if self._thread is not None:
            self._thread.join(timeout)
        self._wake_r.close()
        self._wake_w.close()

    # -- the thread -------------------------------------------------------------
    def _run(self) -> None:
        delay = self.RETRY_SECONDS[0]
        said = False
        while not self._stop.is_set():
            try:
                sock = _connect(self.address, self.timeout)
            except OSError as e:
                if not said:  # once per outage, not at every retry
                    log.warning("SNMP: no AgentX master at %s (%s); trying again", self.address,
                                e.strerror or e)
                    said = True
                self._wait(delay)
                delay = min(delay * 2, self.RETRY_SECONDS[1])
                continue
            try:
                self._open(sock)
                said, delay = False, self.RETRY_SECONDS[0]
                log.info("SNMP: registered with the AgentX master at %s", self.address)
                self.on_open()
                self.connected.set()
                self._serve(sock)
            except (OSError, AgentXError) as e:
                log.warning("SNMP: the AgentX session with %s ended (%s)", self.address, e)
            finally:
                self.connected.clear()
                sock.close()
            self._wait(delay)

    def _wait(self, seconds: float) -> None:
        select.select([self._wake_r], [], [], seconds)
        self._drain_wake()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:  # nothing left (or closed by stop)
            pass

    def _send(self, sock: socket.socket, kind: int, payload: bytes,
              transaction: int = 0, packet: int | None = None) -> int:
        if packet is None:
            self._packet += 1
            packet = self._packet
        sock.sendall(encode_pdu(kind, self._session, transaction, packet, payload))
        return packet

    def _read(self, sock: socket.socket) -> list[bytes]:
        """Read what the socket has; return the whole PDUs now buffered."""
        chunk = sock.recv(65536)
        if not chunk:
            raise AgentXError("the master closed the connection")
        self._buffer += chunk
        out = []
        while len(self._buffer) >= _HEADER:
            end = _HEADER + decode_header(self._buffer)[5]
            if len(self._buffer) < end:
                break
            out.append(self._buffer[:end])
            self._buffer = self._buffer[end:]
        return out

    def _request(self, sock: socket.socket, kind: int, payload: bytes) -> PDU:
        packet = self._send(sock, kind, payload)
        deadline = time.monotonic() + self.timeout
        while (left := deadline - time.monotonic()) > 0:
            if select.select([sock], [], [], left)[0]:
                for data in self._read(sock):
                    pdu = decode_pdu(data)
                    if pdu.kind == RESPONSE and pdu.packet == packet:
                        return pdu
        raise AgentXError(f"no answer from the master to PDU type {kind}")

    def _open(self, sock: socket.socket) -> None:
        self._session, self._buffer = 0, b""
        timeout = max(1, min(255, int(self.timeout)))
        pdu = self._request(sock, OPEN, struct.pack("!Bxxx", timeout) + encode_oid(())
                            + encode_octets(self.description.encode()))
        if pdu.error:
            raise AgentXError(f"the master refused to open a session (error {pdu.error})")
        self._session = pdu.session
        pdu = self._request(sock, REGISTER, struct.pack("!BBBx", timeout, 127, 0)
                            + encode_oid(self.subtree))
        if pdu.error:
            raise AgentXError(f"the master refused to register {'.'.join(map(str, self.subtree))}"
                              f" (error {pdu.error}; is another sub-agent serving it?)")

    def _serve(self, sock: socket.socket) -> None:
        while True:
            self._flush(sock)
            if self._stop.is_set():
                self._send(sock, CLOSE, struct.pack("!Bxxx", _CLOSE_SHUTDOWN))
                return
            ready = select.select([sock, self._wake_r], [], [], 5.0)[0]
            if self._wake_r in ready:
                self._drain_wake()
            if sock in ready:
                for data in self._read(sock):
                    self._handle(sock, data)

    def _flush(self, sock: socket.socket) -> None:
        while True:
            with self._lock:
                if not self._backlog:
                    return
                values = self._backlog[0]
            self._send(sock, NOTIFY, b"".join(encode_value(o, v) for o, v in values))
            with self._lock:
                self._backlog.popleft()

    def _handle(self, sock: socket.socket, data: bytes) -> None:
        pdu = decode_pdu(data)
        if pdu.kind == CLOSE:
            raise AgentXError("the master closed the session")
        if pdu.kind in (GET, GETNEXT, GETBULK):
            payload = response_payload(answer(pdu, self.view()))
        elif pdu.kind == TESTSET:
            payload = response_payload((), NOT_WRITABLE, 1)
        elif pdu.kind in (COMMITSET, UNDOSET):
            payload = response_payload(())
        else:  # responses to our notifications; CleanupSet takes no answer
            if pdu.kind == RESPONSE and pdu.error:
                log.warning("SNMP: the AgentX master answered error %d", pdu.error)
            return
        sock.sendall(encode_pdu(RESPONSE, pdu.session, pdu.transaction, pdu.packet, payload))

    def view(self) -> View:
        """The data, rebuilt when older than ``max_age`` seconds."""
        now = time.monotonic()
        if self._view is None or now - self._view_time > self.max_age:
            self._view, self._view_time = self._make_view(), now
        return self._view

