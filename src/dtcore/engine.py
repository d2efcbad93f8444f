"""``dtcore.Engine``: the object another program embeds.

One engine holds the settings, the statistics and the engine log; it starts
target services, connects replication sets to targets, replicates them
live, and runs mirrors, verifies and restores over those connections.  A
mirror cut by a lost connection reconnects (``AutoReconnect``) and resumes
where it stopped; a replication reconnects and resends what the target had
not acknowledged."""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

from dtcore.apply import APPLY_THREADS
from dtcore.control.config import Config
from dtcore.control.config import log_dir as config_log_dir
from dtcore.control.enginelog import EngineLog
from dtcore.control.events import Event, EventCounts, emit, subscribe
from dtcore.control.stats import ConState, Snapshot, Statistics
from dtcore.control.statserver import StatsServer
from dtcore.control.stsfile import StatsFile, StatsLogger
from dtcore.errors import ConnectionFailedError, DTError, NetworkFailedError
from dtcore.model.repset import ReplicationSet, Rule, Totals
from dtcore.source.connection import Connection
from dtcore.source.mirror import DIFFERENCE, FULL, Mirror, MirrorOptions, MirrorResult
from dtcore.source.replication import Replication, missed_reason
from dtcore.source.restore import RestoreResult, restore
from dtcore.source.verifylog import VerifyLog
from dtcore.target.service import HANDSHAKE_TIMEOUT, Target

if TYPE_CHECKING:
    from dtcore.source.mirror.profile import ProfileReport

_RECONNECT_TRIES = 5
_PASSES = 6  # difference passes at most after a mirror that ops raced
_SETTLE = 5.0  # seconds a pass waits for the ops reported so far to be applied


class Engine:
    """A dtcore engine: settings, statistics, events, targets and connections.

    ``secret`` is the shared secret this engine's targets require and its
    connections prove (default: $DTCORE_SECRET).

    As the settings say, an engine writes its events to ``dtlog<N>.dtl`` in
    ``LogDir`` (``log_dir`` overrides it; ``log=False``: no log), and with
    ``statistics`` it logs ``StatsFileName`` in LogDir every
    ``StatsWriteInterval`` minutes when ``StatsLoggingOn`` is 1 and serves
    live statistics on ``StatsPort`` at ``stats_host`` (``dtstat -server``).
    A log folder it cannot write or a port in use is reported (events 6009
    and 6001) and the engine runs on without them."""

    def __init__(self, config: Config | None = None, *, secret: str | bytes | None = None,
                 log: bool = True, log_dir: str | None = None, statistics: bool = True,
                 stats_host: str = "127.0.0.1", **settings: Any) -> None:
        self.config = config or Config(None, **settings)
        self.secret = secret
        self.stats = Statistics()
        self.targets: list[Target] = []
        self.connections: list[Connection] = []
        self.replications: list[Replication] = []
        self.repset_totals: dict[str, Totals] = {}
        self._next_conn = 1
        self._log: EngineLog | None = None
        self.stats_server: StatsServer | None = None
        self.web_server: Any = None  # a control.webserver.WebServer once serving
        self.events = EventCounts()  # by ID, for the metrics
        self.mirrors: dict[int, Mirror] = {}  # each connection's running (or last) mirror
        self._rpo_history: Any = None  # a control.status.RpoHistory while serving HTTP
        self._stats_logger: StatsLogger | None = None
        self.snmp: Any = None  # a control.snmp.SnmpAgent once serving SNMP
        cfg = self.config
        directory = log_dir or config_log_dir(cfg)
        try:
            if log:
                self._log = EngineLog(directory, cfg["MaxLogFileSize"], cfg["MaxNumberofLogFiles"],
                                      cfg["LogMessageLevel"]).attach()
            if statistics and cfg["StatsLoggingOn"] and cfg["StatsWriteInterval"]:
                os.makedirs(directory, exist_ok=True)
                out = StatsFile(os.path.join(directory, cfg["StatsFileName"]),
                                cfg["StatsMaxFileSize"], bool(cfg["SaveStatFile"]))
                self._stats_logger = StatsLogger(self.stats, out,
                                                 cfg["StatsWriteInterval"] * 60).start()
        except OSError as e:
            emit(6009, detail=f"{directory}: {e.strerror or e}; the engine runs without it")
        if statistics:
            try:
                self.stats_server = StatsServer(self.stats, stats_host, cfg["StatsPort"]).start()
            except DTError as e:
                emit(6001, detail=f"live statistics are not served: {e}")
        self._started = emit(4000)
        self._closed = False

    # -- events and statistics ----------------------------------------------
    def status(self) -> dict[str, Any]:
        """The service view as a document (``/api/status``, ``dtcore status``):
        the server's figures, each target with its sources and their target
        paths' data states, and each connection with its target state,
        transmit mode, mirror and replication status, queues, bytes, RPO and
        ``why_idle``, the reason in one line when nothing can move."""
        from dtcore.control.status import document
        return document(self.statistics(), self.targets, self.connections, self.replications,
                        self.mirrors, self._rpo_history)

    def serve_http(self, host: str = "127.0.0.1", port: int = 0, *,
                   token: str | bytes | None = None) -> int:
        """Serve this engine over HTTP on ``host:port`` (0: any free port)
        until it closes: Prometheus metrics at ``/metrics`` and the service
        view's document at ``/api/status``, read by anyone who can reach the
        port.  With a ``token``, ``POST /api/connections/<id>/pause`` and
        ``/resume`` (:meth:`Connection.pause`) are accepted from requests
        carrying ``Authorization: Bearer <token>``; without one, none.
        Returns the port."""
        if self.web_server is None:
            # prometheus-client and http.server load only for an engine that serves
            from dtcore.control.metrics import EngineCollector
            from dtcore.control.status import RpoHistory
            from dtcore.control.webserver import WebServer

            def target_path(conn_id: int) -> str:
                return next((c.target_path for c in self.connections if c.id == conn_id), "")
            collector = EngineCollector(self.stats, self.events, target_path)
            self._rpo_history = RpoHistory(lambda: {
                c.id: int(c.tx.rep.pipeline.recovery_point()[1])
                for c in self.connections if c.tx.rep is not None}).start()
            self.web_server = WebServer(
                collector, self.status, host, port, act=self._act,
                token=token.encode() if isinstance(token, str) else token).start()
        return self.web_server.port

    def _act(self, conn_id: int, action: str) -> dict[str, Any] | None:
        conn = next((c for c in self.connections if c.id == conn_id), None)
        if conn is None:
            return None
        conn.pause() if action == "pause" else conn.resume()
        return next(row for row in self.status()["connections"] if row["id"] == conn_id)

    def serve_snmp(self, master: str | None = None) -> Any:
        """Serve this engine's NSI-MIB (``dt.mib``) through an AgentX
        sub-agent of the SNMP master at ``master`` (snmpd's agentXSocket:
        a path, default /var/agentx/master, or ``tcp:host:port``) and send
        its traps, until the engine closes.  The sub-agent waits for a
        master that is not there yet and reconnects to one that restarts.
        Returns the :class:`dtcore.control.snmp.SnmpAgent`."""
        if self.snmp is None:
            from dtcore.control.snmp import DEFAULT_MASTER, SnmpAgent
            self.snmp = SnmpAgent(self.stats, master or DEFAULT_MASTER,
                                  started=self._started).start()
        return self.snmp

    @staticmethod
    def subscribe(callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` with every event; returns the unsubscribe function."""
        return subscribe(callback)

    def statistics(self) -> Snapshot:
        """A snapshot of every counter (server, target and connection sections)."""
        return self.stats.snapshot()

    # -- targets ------------------------------------------------------------
    def start_target(self, root: str | os.PathLike[str], *, host: str = "127.0.0.1",
                     port: int | None = None, tls: bool | tuple[str, str] | None = None,
                     memory_bytes: int | None = None, apply_threads: int = APPLY_THREADS,
                     handshake_timeout: float = HANDSHAKE_TIMEOUT) -> Target:
        """Start a target service writing beneath ``root`` (port 0: any free
        port); a source must finish its handshake within ``handshake_timeout``
        seconds."""
        target = Target(root, host=host, port=port, secret=self.secret, config=self.config,
                        stats=self.stats, tls=tls, memory_bytes=memory_bytes,
                        apply_threads=apply_threads, handshake_timeout=handshake_timeout).start()
        self.targets.append(target)
        self.stats.server["TargetState"] = 1  # the guide's "target is running"
        return target

    # -- sources ------------------------------------------------------------
    def replication_set(self, root: str | os.PathLike[str], rules: Iterable[Rule | str] = ("",),
                        name: str = "") -> ReplicationSet:
        return ReplicationSet(root, rules, name)

    def connect(self, repset: ReplicationSet, host: str = "127.0.0.1", port: int | None = None,
                target_path: str = "", *, tls: bool | None = None,
                compression: bool | str = True, calculate: bool | None = None) -> Connection:
        """Connect a replication set to a target path.  With CalculateOnConnect
        (or ``calculate`` True) the set's size is worked out first
        (``repset_totals``); a caller about to mirror passes False and the
        mirror's own walk fills it in, so the set is walked once.
        ``compression``: True (or "auto") compresses when it pays on this
        link, "always" whenever lz4 shrinks the data, False never
        (:mod:`dtcore.protocol.adaptive`)."""
        if self.config["CalculateOnConnect"] if calculate is None else calculate:
            self.repset_totals[repset.name] = repset.calculate()
        conn = Connection(host, port, target_path, secret=self.secret, config=self.config,
                          stats=self.stats, conn_id=self._next_conn, repset=repset.name, tls=tls,
                          compression=compression)
        try:
            conn.connect()
        except NetworkFailedError:  # reached, then cut in the handshake: like a lost link
            if not self.config["AutoReconnect"]:
                raise
            self._reconnect(conn, 1)
        self._next_conn += 1
        self.connections.append(conn)
        self._source_state()
        return conn

    def _source_state(self) -> None:
        """SourceState: 0 no source, 1 a source without change capture, 2 one
        whose replication watches the file system (the guide's driver)."""
        watched = any(r.watcher is not None for r in self.replications)
        was = self.stats.server["SourceState"]
        now = self.stats.server["SourceState"] = 2 if watched else 1 if self.connections else 0
        if bool(was) != bool(now):
            emit(4002 if now else 4003)

    def mirror(self, conn: Connection, repset: ReplicationSet, mode: str = DIFFERENCE, *,
               checksum: bool | None = None, orphans: bool = False,
               progress: Callable[[Mirror], None] | None = None, **options: Any) -> MirrorResult:
        """Mirror ``repset`` over ``conn`` (``mode`` "full" or "difference");
        ``checksum`` overrides ChecksumAll, other keywords any MirrorOptions field."""
        opts = MirrorOptions.from_config(self.config, mode=mode, checksum=checksum, orphans=orphans,
                                         **options)
        return self._run(Mirror(conn, repset, opts, progress=progress))

    def profile(self, conn: Connection, repset: ReplicationSet, *, checksum: bool | None = None,
                orphans: bool = False, progress: Callable[[Mirror], None] | None = None,
                top: int = 10, then_mirror: bool = False, cpu_profile: str | None = None,
                sample: int = 0, **options: Any) -> "ProfileReport":
        """Profile a difference mirror of ``repset`` over ``conn``: what it
        would send for each file and why, the bytes and time on this link,
        how other settings would change that, and where the time goes on
        each side; nothing on the target changes
        (:mod:`dtcore.source.mirror.profile`).  ``top``: files and folders
        listed in each ranking.  With ``then_mirror``, the mirror then runs
        for real and its own report, in the same form with what it took
        (``ran``), is the profile's ``mirror``: predicted against actual.
        ``cpu_profile``: a file for cProfile's view of the profile's Python
        side, every thread included.  ``sample``: look at about that many
        files (at random) and estimate the others, with 95 % bounds.
        Other keywords as for :meth:`mirror`."""
        from dtcore.source.mirror.profile import profile

        def options_() -> MirrorOptions:
            return MirrorOptions.from_config(self.config, mode=DIFFERENCE, checksum=checksum,
                                             orphans=orphans, **options)
        report = profile(conn, repset, options_(), progress=progress, top=top,
                         cpu_profile=cpu_profile, sample=sample)
        if then_mirror:
            report.mirror = profile(conn, repset, options_(), progress=progress, top=top,
                                    send=True, run=self._run)
        return report

    def replicate(self, conn: Connection, repset: ReplicationSet, *,
                  directory: str | None = None, coalesce: float = 0.005,
                  watch: bool | str = False, watch_coalesce: float = 0.02,
                  mirror: str | None = None, checksum: bool | None = None, orphans: bool = False,
                  progress: Callable[[Mirror], None] | None = None) -> Replication:
        """Start replicating ``repset`` live over ``conn`` (event 4024): the
        returned :class:`~dtcore.source.replication.Replication` takes the
        program's ops.  Its queue and journal live in ``directory`` (default:
        a folder of QJournalDir named after the set and the target path); ops
        left there by an earlier run go first.  When that run may have lost
        ops (it crashed without QLogWriteThrough) or the target path is not
        OK, the target is marked Mirror Required and remirrored per
        AutoRemirror before this returns.

        ``watch`` (True, "auto", "fanotify" or "inotify") captures changes
        from the file system as well, data changes taken after writes pause
        for ``watch_coalesce`` seconds; ``mirror`` ("full" or "difference")
        runs an initial mirror once watching has started, so that nothing
        changed meanwhile is missed."""
        rep = Replication(conn, repset, directory=directory, coalesce=coalesce)
        self.replications.append(rep)
        rep.on_remirror = lambda: self._remirror(conn, repset, progress)
        try:
            if watch:
                rep.watch("auto" if watch is True else watch, watch_coalesce)
                self._source_state()
            if mirror is not None:  # it brings the target in step: no heal besides
                rep.needs_mirror = False
                self.mirror(conn, repset, mirror, checksum=checksum, orphans=orphans,
                            progress=progress)
            elif rep.needs_mirror and conn.alive:  # otherwise once a link is up (rep heals)
                rep.heal()
        except BaseException:
            rep.close(0)
            self.replications.remove(rep)
            raise
        return rep

    def _remirror(self, conn: Connection, repset: ReplicationSet,
                  progress: Callable[[Mirror], None] | None = None) -> None:
        """The mirror AutoRemirror asks for (0: none; the target path stays
        Mirror Required until one is run)."""
        how = self.config["AutoRemirror"]
        if how:
            self.mirror(conn, repset, FULL if how == 2 else DIFFERENCE, checksum=how == 4,
                        progress=progress)

    def verify(self, conn: Connection, repset: ReplicationSet, *, remirror: bool = False,
               checksum: bool | None = True, log_dir: str | None = None,
               progress: Callable[[Mirror], None] | None = None,
               **options: Any) -> MirrorResult:
        """Compare source and target, list differences in DTVerify.log, and
        with ``remirror`` send what differs; other keywords any MirrorOptions field."""
        opts = MirrorOptions.from_config(self.config, verify=True, remirror=remirror,
                                         checksum=checksum, **options)
        vlog = VerifyLog.from_config(self.config, conn.label(), log_dir)
        result: MirrorResult | None = None
        try:
            result = self._run(Mirror(conn, repset, opts, progress=progress, verify_log=vlog))
            result.log = vlog.path
            return result
        finally:
            vlog.close(f"{len(result.differences)} differences" if result else "interrupted")

    def restore(self, conn: Connection, destination: str | os.PathLike[str], *,
                overwrite: int | None = None,
                progress: Callable[[RestoreResult], None] | None = None) -> RestoreResult:
        """Copy the target path back into ``destination`` (RestoreOverwrite);
        ``progress`` is called after each entry and each chunk fetched."""
        return restore(conn, destination, overwrite=overwrite, progress=progress)

    def _run(self, m: Mirror) -> MirrorResult:
        """Run a mirror; with a replication live on its connection, its ops
        are flagged as sent during a mirror, and when any arrived, up to two
        difference passes by attributes follow, for names the ops moved, and
        more while the target reports names missing that the source has
        (see :mod:`dtcore.source.replication`)."""
        tx = m.conn.tx
        rep = tx.rep
        before = rep.pipeline.state.last_seq() if rep is not None else 0
        tx.mirroring += 1
        self.mirrors[m.conn.id] = m  # the service view shows it, and its last one after
        try:
            tx.take_missed()  # reported before this mirror listed anything
            result = self._run_once(m)
            if not result.resumed:  # its walk covered the whole set: the latest totals
                self.repset_totals[m.repset.name] = Totals(result.bytes_total, result.files,
                                                           result.directories)
            live = next((r for r in self.replications if r.stream is rep), None)
            passes = 0
            while rep is not None and rep.pipeline.state.last_seq() != before:
                if passes >= 2:  # the first two run whenever ops arrived
                    if live is None:
                        break
                    seen = live.missed(_SETTLE)
                    if not seen.names and not seen.more:
                        if not seen.settled:  # the replication looks again once they are applied
                            live.check_missed_after(rep.pipeline.state.last_seq())
                        break
                    if passes >= _PASSES:
                        live.lost(missed_reason(seen.names))
                        break
                before = rep.pipeline.state.last_seq()
                tx.take_missed()  # this pass lists after these: it brings them
                opts = MirrorOptions.from_config(self.config, mode=DIFFERENCE, checksum=False)
                self._run_once(Mirror(m.conn, m.repset, opts))
                passes += 1
            return result
        finally:
            tx.mirroring -= 1

    def _run_once(self, m: Mirror) -> MirrorResult:
        tries = 0
        while True:
            try:
                return m.run(resume=tries > 0)
            except (NetworkFailedError, ConnectionFailedError) as e:
                conn = m.conn
                if not self.config["AutoReconnect"] or tries >= _RECONNECT_TRIES:
                    conn.counters["conState"] = int(ConState.ERROR)
                    raise
                tries += 1
                emit(4022, conn=conn.label(), detail=f"connection lost ({e}); reconnecting")
                emit(4009, repset=conn.repset, target=conn.host, address=f"{conn.host}:{conn.port}")
                self.stats.server.add("autoDisConnects")
                self._reconnect(conn, tries)
                self.stats.server.add("autoReConnects")

    def _reconnect(self, conn: Connection, tries: int) -> None:
        delay = 0.2
        for _ in range(_RECONNECT_TRIES):
            try:
                conn.reconnect()
                emit(4010, repset=conn.repset, target=conn.host, address=f"{conn.host}:{conn.port}")
                return
            except (NetworkFailedError, ConnectionFailedError):
                time.sleep(delay)
                delay = min(delay * 2, 5)
        emit(4011, repset=conn.repset, target=conn.host, address=f"{conn.host}:{conn.port}")
        raise ConnectionFailedError(f"could not reconnect to {conn.host}:{conn.port}")

    # -- shutting down --------------------------------------------------------
    def close(self, timeout: float = 30) -> None:
        """Disconnect every connection (each waiting up to ``timeout`` seconds
        for what it sent to be acknowledged) and stop every target."""
        for rep in self.replications:
            rep.close(timeout)
        self.replications.clear()
        for conn in self.connections:
            conn.close(timeout)
        for target in self.targets:
            target.stop()
        self.connections.clear()
        self.targets.clear()
        self.stats.server["TargetState"] = 0
        self._source_state()
        if self._stats_logger is not None:
            self._stats_logger.stop()
            self._stats_logger.out.append(self.stats.snapshot())  # how it ended
            self._stats_logger = None
        if self.stats_server is not None:
            self.stats_server.stop()
            self.stats_server = None
        if self.web_server is not None:
            self.web_server.stop()
            self._rpo_history.stop()
            self.web_server = self._rpo_history = None
        if not self._closed:
            self._closed = True
            emit(4005)
        if self.snmp is not None:
            self.snmp.stop()  # after 4005, so that its trap goes out
            self.snmp = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self.events.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        # interrupted (Ctrl-C): stop now rather than wait for acknowledgements
        self.close(0 if kind is KeyboardInterrupt else 30)
