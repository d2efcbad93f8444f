"""What the engine's commands do once parsed: ``dtcore target``, ``mirror``,
``replicate``, ``verify`` and ``restore``, with a progress bar and a
statistics summary (their options are in :mod:`dtcore.cli.commands`)."""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterator

from dtcore.cli import exits
from dtcore.cli.progress import Bar, print_connection_stats, print_result
from dtcore.cli.report import print_items
from dtcore.cli.watchdog import Watchdog
from dtcore.control.config import Config, default_path
from dtcore.engine import Engine
from dtcore.errors import AccessDeniedError, ConnectionFailedError, InvalidParameterError
from dtcore.model.repset import ReplicationSet
from dtcore.protocol.handshake import secret_bytes
from dtcore.source.connection import Connection, parse_address
from dtcore.source.mirror import DIFFERENCE, FULL, MirrorResult
from dtcore.source.restore import RestoreResult


def _secret(args: argparse.Namespace) -> str | None:
    if args.secret_file:
        with open(args.secret_file) as f:
            return f.read().strip()
    return None  # $DTCORE_SECRET


def _compression(args: argparse.Namespace) -> bool | str:
    return False if args.compress == "never" else args.compress


def _engine(args: argparse.Namespace, statistics: bool = False,
            stats_host: str = "127.0.0.1") -> Engine:
    """The command's engine: its events go to the engine log; the services
    (target, replicate) also log and serve statistics, as DT.conf says."""
    return Engine(Config(args.conf or default_path()), secret=_secret(args),
                  statistics=statistics, stats_host=stats_host)


def _address(engine: Engine, args: argparse.Namespace) -> tuple[str, int, str]:
    host, port, path = parse_address(args.target, engine.config["NetPort"])
    if not path and not args.allow_root:
        raise InvalidParameterError(
            f"{args.target!r} names no target path: the copy would go into the target's root, "
            "beside every other source's; name one (HOST:PORT:PATH) or pass --allow-root")
    return host, port, path


def _connect(engine: Engine, args: argparse.Namespace, root: str) -> tuple[Connection, ReplicationSet]:
    host, port, path = _address(engine, args)
    rules = (args.rule or [""]) + [f"{p},Inc,Rec" for p in args.include or ()] + \
        [f"{p},Exc,Rec" for p in args.exclude or ()]
    repset = ReplicationSet(root, rules)
    # every command connecting here walks the set at once, which gives the
    # totals CalculateOnConnect would have walked it for
    return engine.connect(repset, host, port, path, tls=True if args.tls else None,
                          compression=_compression(args), calculate=False), repset


@contextlib.contextmanager
def _watched(args: argparse.Namespace, engine: Engine) -> Iterator[Callable[[Any], None] | None]:
    """The progress callback of a command (a bar unless --quiet or --json),
    under --timeout's watchdog when one is asked for."""
    position: list[Any] = [None]
    bar = None if args.quiet or args.json else Bar()

    def progress(m: Any) -> None:
        if isinstance(m, RestoreResult):  # a restore moves by what it has fetched
            position[0] = (m.files, m.bytes_fetched)
            return
        position[0] = (m.status, m.files_done, m.bytes_remaining)
        if bar is not None:
            bar(m)

    def probe() -> Any:  # what moves while work moves; heartbeats do not count
        return position[0], engine.stats.server.values.tobytes(), \
            [c.counters.values.tobytes() for c in engine.connections]

    with contextlib.ExitStack() as stack:
        if args.timeout:
            stack.enter_context(Watchdog(args.timeout, probe))
        if bar is not None:
            stack.enter_context(bar)
        yield progress


def _finish(args: argparse.Namespace, title: str, result: MirrorResult, engine: Engine) -> None:
    """What a mirror (or verify) prints once it is done."""
    args.outcome = result
    if result.special and not args.json:
        kinds = sorted({kind for kind, _ in result.special})
        print(f"dtcore {args.command}: left out {len(result.special):,} special files "
              f"({', '.join(kinds)}), which are not replicated: first {result.special[0][1]}",
              file=sys.stderr)
    if args.itemize:
        print_items(result.items)
    if not (args.quiet or args.json):
        print_result(title, result)
        print_connection_stats(engine.statistics())


def mirror(args: argparse.Namespace) -> int:
    with _engine(args) as engine:
        with _watched(args, engine) as progress:
            conn, repset = _connect(engine, args, args.source)
            result = engine.mirror(conn, repset, FULL if args.full else DIFFERENCE,
                                   checksum=args.checksum, orphans=args.orphans, progress=progress,
                                   dry_run=args.dry_run or None, retry_budget=args.retries,
                                   itemize=args.itemize)
        if args.dry_run:
            args.outcome = result
            if not args.json:
                print_items(result.planned, "would ")
                print(f"{len(result.planned)} changes planned; nothing was sent or removed")
            return exits.OK
        _finish(args, f"{'full' if args.full else 'difference'} mirror of {repset.root}", result,
                engine)
    return 0


def profile(args: argparse.Namespace) -> int:
    """``dtcore profile``: a difference mirror measured, not run."""
    import json

    from dtcore.cli.profile_report import print_profile
    with _engine(args) as engine:
        with _watched(args, engine) as progress:
            conn, repset = _connect(engine, args, args.source)
            report = engine.profile(conn, repset, checksum=args.checksum, orphans=args.orphans,
                                    progress=progress, top=args.top,
                                    then_mirror=args.then_mirror, cpu_profile=args.cpu_profile,
                                    sample=args.sample)
    doc = report.document()
    if args.html:
        try:
            from dtcore.cli.profile_html import render
            page = render(doc)
        except ImportError as e:
            raise InvalidParameterError(f"--html needs matplotlib ({e}): "
                                        "pip install 'dtcore[html]'") from None
        with open(args.html, "w") as f:
            f.write(page)
    if args.json:
        print(json.dumps(doc, indent=1))
        args.json_done = True  # the report is the command's JSON
    elif not args.quiet:
        print_profile(doc)
    return exits.OK


def _status_line(rep: Any, last: dict[str, float]) -> str:
    """State, ops/s and MB/s since the last line, queue in memory and on
    disk, and the recovery point."""
    s = rep.statistics()
    snap = rep.conn.counters
    now = time.monotonic()
    ops, sent = snap["conOpsTx"], snap["conBytesTx"]
    dt = max(now - last.get("t", now - 1), 1e-3)
    rate = (ops - last.get("ops", ops)) / dt, (sent - last.get("bytes", sent)) / dt / 1e6
    last.update(t=now, ops=ops, bytes=sent)
    disk = s["conBytesInDiskQueue"]
    memory = s["conBytesInRepQueue"] - disk
    return (f"{s['status']:<12} {rate[0]:>8,.0f} ops/s {rate[1]:>8.2f} MB/s  queue "
            f"{memory / 2**20:,.1f} MiB memory, {disk / 2**20:,.1f} MiB disk  RPO {s['ConRPL']} s")


def replicate(args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with _engine(args, statistics=True) as engine:
        with _watched(args, engine) as progress:
            conn, repset = _connect(engine, args, args.source)
            rep = engine.replicate(conn, repset, watch=args.watch,
                                   watch_coalesce=args.coalesce / 1000,
                                   mirror=FULL if args.full else DIFFERENCE,
                                   checksum=args.checksum, orphans=args.orphans, progress=progress)
        _http(args, engine, args.http_host)
        print(f"mirror complete; replicating {repset.root} as it changes (watching with "
              f"{rep.watcher.method}); stop with Ctrl-C or SIGTERM", flush=True)
        tty = sys.stderr.isatty()
        last: dict[str, float] = {}
        try:
            while not stop.wait(args.interval):
                line = _status_line(rep, last)
                print(f"\r{line}" if tty else line, end="" if tty else "\n", file=sys.stderr,
                      flush=True)
        except KeyboardInterrupt:
            pass
        if tty:
            print(file=sys.stderr)
        print("stopping: waiting for the target to apply what is queued", flush=True)
        drained = rep.close(args.drain_timeout)
        engine.close(args.drain_timeout)  # the same bound for what the mirror queue holds
        if drained:
            print("stopped: every change was applied on the target")
        else:
            print(f"stopped: {rep.left:,} ops not yet applied are kept in {rep.directory}; they go "
                  "first when replication starts again")
    return exits.OK


def verify(args: argparse.Namespace) -> int:
    with _engine(args) as engine:
        with _watched(args, engine) as progress:
            conn, repset = _connect(engine, args, args.source)
            result = engine.verify(conn, repset, remirror=args.remirror, log_dir=args.log_dir,
                                   progress=progress, retry_budget=args.retries,
                                   itemize=args.itemize)
        args.outcome = result
        if not args.json:
            for path, reason in result.differences[:50]:
                print(f"DIFFERS  {path}: {reason}")
            if args.itemize:
                print_items(result.items)
            if not args.quiet:
                print(f"{len(result.differences)} differences"
                      + (" (remirrored)" if args.remirror else "") + f"; listed in {result.log}")
    if result.differences and not args.remirror:
        args.reason = f"{len(result.differences)} differences"
        return exits.DIFFERENCES
    return exits.OK


def restore(args: argparse.Namespace) -> int:
    with _engine(args) as engine:
        host, port, path = _address(engine, args)
        os.makedirs(args.destination, exist_ok=True)
        with _watched(args, engine) as progress:
            conn = engine.connect(ReplicationSet(args.destination), host, port, path,
                                  tls=True if args.tls else None,
                                  compression=_compression(args))
            r = engine.restore(conn, args.destination, overwrite=args.overwrite, progress=progress)
        args.outcome = r
        if not (args.quiet or args.json):
            print(f"restored {r.files} files and {r.directories} folders ({r.bytes_fetched:,} "
                  f"bytes fetched, {r.skipped} left as they were) in {r.seconds:.2f} s")
    return 0


def target(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.root) and not args.create:
        raise InvalidParameterError(f"{args.root} does not exist; check the name, or pass "
                                    "--create to start a new target root there")
    done = threading.Event()
    reload = threading.Event()
    # before the first line: whoever reads it may signal at once
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGHUP, lambda *_: (reload.set(), done.set()))
    with _engine(args, statistics=True, stats_host=args.host) as engine:
        target = engine.start_target(args.root, host=args.host, port=args.port,
                                     tls=True if args.tls else None,
                                     apply_threads=args.apply_threads)
        print(f"dtcore target serving {os.path.abspath(args.root)} on {target.host}:{target.port}",
              flush=True)
        _http(args, engine, args.host)
        if engine.stats_server is not None:
            print(f"dtcore target: live statistics on {args.host}:{engine.stats_server.port} "
                  "(dtstat -server)", file=sys.stderr, flush=True)
        try:
            while True:
                done.wait()
                if not reload.is_set():
                    break
                done.clear()
                reload.clear()
                _reload(engine)
        except KeyboardInterrupt:
            pass
    return 0


def _http(args: argparse.Namespace, engine: Engine, host: str) -> None:
    """The exports asked for: the HTTP port and the SNMP sub-agent."""
    if args.snmp is not None:
        agent = engine.serve_snmp(args.snmp or None)
        print(f"dtcore {args.command}: SNMP sub-agent for {agent.subagent.address} (NSI-MIB: "
              "dtcore mib)", file=sys.stderr, flush=True)
    if args.http_port is not None:
        # the shared secret that lets a source in also lets an operator act
        port = engine.serve_http(host, args.http_port, token=secret_bytes(engine.secret))
        print(f"dtcore {args.command}: metrics on http://{host}:{port}/metrics, the service "
              f"view's document on /api/status (dtcore status {host}:{port})", file=sys.stderr,
              flush=True)


def _reload(engine: Engine) -> None:
    """SIGHUP: read DT.conf again and say what changed."""
    config = engine.config
    try:
        changed = config.reload()
    except (OSError, InvalidParameterError) as e:  # a broken file changes nothing
        print(f"dtcore target: DT.conf not reloaded: {e}", file=sys.stderr, flush=True)
        return
    later = [n for n in changed if n in config.pending_restart]
    print(f"dtcore target: reloaded {config.path}: "
          + (", ".join(f"{n}={config.text(n)}" for n in changed) or "nothing changed")
          + (f" ({', '.join(later)} after a restart)" if later else ""),
          file=sys.stderr, flush=True)




def status(args: argparse.Namespace) -> int:
    """``dtcore status HOST:PORT [--pause N | --resume N]``: the service view
    of a running engine, after pausing or resuming connection N."""
    import json
    import urllib.error
    import urllib.request

    from dtcore.cli.progress import print_status
    host, _, port = args.address.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidParameterError(f"{args.address!r} is not HOST:PORT")
    base = f"http://{host}:{port}/api"
    for action, conn_id in (("pause", args.pause), ("resume", args.resume)):
        if conn_id is None:
            continue
        token = secret_bytes(_secret(args)).decode()
        req = urllib.request.Request(f"{base}/connections/{conn_id}/{action}", method="POST",
                                     headers={"Authorization": f"Bearer {token}"})
        try:
            urllib.request.urlopen(req, timeout=10).close()
        except urllib.error.HTTPError as e:
            reason = json.loads(e.read() or b"{}").get("error", e.reason)
            if e.code in (401, 403):
                raise AccessDeniedError(f"{action} refused: {reason}") from None
            raise InvalidParameterError(f"{action} refused: {reason}") from None
        except OSError as e:
            raise ConnectionFailedError(f"no engine answers at {base}: "
                                        f"{getattr(e, 'reason', e)}") from None
    url = f"{base}/status"
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            doc = json.loads(reply.read())
    except OSError as e:
        raise ConnectionFailedError(f"no engine answers at {url}: {getattr(e, 'reason', e)}") \
            from None
    if args.json:
        print(json.dumps(doc, indent=1))
        args.json_done = True  # the document is the command's JSON: no summary after it
    else:
        print_status(doc)
    return exits.OK
