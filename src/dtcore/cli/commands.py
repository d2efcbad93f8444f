"""The engine's commands: ``dtcore target``, ``mirror``, ``replicate``, ``verify`` and
``restore``, with a progress bar and a statistics summary."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from typing import Any

from dtcore.cli import exits
from dtcore.cli.progress import Bar, print_connection_stats, print_result
from dtcore.control.config import Config, default_path
from dtcore.engine import Engine
from dtcore.errors import InvalidParameterError
from dtcore.model.repset import ReplicationSet
from dtcore.source.connection import Connection, parse_address
from dtcore.source.mirror import DIFFERENCE, FULL
from dtcore.target.service import APPLY_THREADS


def _secret(args: argparse.Namespace) -> str | None:
    if args.secret_file:
        with open(args.secret_file) as f:
            return f.read().strip()
    return None  # $DTCORE_SECRET


def _engine(args: argparse.Namespace) -> Engine:
    conf = args.conf or default_path()
    return Engine(Config(conf if os.path.exists(conf) else None), secret=_secret(args))


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
    return engine.connect(repset, host, port, path, tls=True if args.tls else None), repset


def _mirror(args: argparse.Namespace) -> int:
    with _engine(args) as engine:
        conn, repset = _connect(engine, args, args.source)
        with Bar() as bar:
            result = engine.mirror(conn, repset, FULL if args.full else DIFFERENCE,
                                   checksum=args.checksum, orphans=args.orphans, progress=bar,
                                   dry_run=args.dry_run or None)
        if args.dry_run:
            for action, path in result.planned:
                print(f"would {action:<10} {path}")
            print(f"{len(result.planned)} changes planned; nothing was sent or removed")
            return exits.OK
        print_result(f"{'full' if args.full else 'difference'} mirror of {repset.root}", result)
        print_connection_stats(engine.statistics())
    return 0


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


def _replicate(args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with _engine(args) as engine:
        conn, repset = _connect(engine, args, args.source)
        with Bar() as bar:
            rep = engine.replicate(conn, repset, watch=args.watch,
                                   watch_coalesce=args.coalesce / 1000,
                                   mirror=FULL if args.full else DIFFERENCE,
                                   checksum=args.checksum, orphans=args.orphans, progress=bar)
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
        if drained:
            print("stopped: every change was applied on the target")
        else:
            print(f"stopped: {rep.left:,} ops not yet applied are kept in {rep.directory}; they go "
                  "first when replication starts again")
    return exits.OK


def _verify(args: argparse.Namespace) -> int:
    with _engine(args) as engine:
        conn, repset = _connect(engine, args, args.source)
        with Bar() as bar:
            result = engine.verify(conn, repset, remirror=args.remirror, log_dir=args.log_dir,
                                   progress=bar)
        for path, reason in result.differences[:50]:
            print(f"DIFFERS  {path}: {reason}")
        print(f"{len(result.differences)} differences" + (" (remirrored)" if args.remirror else ""))
    return exits.DIFFERENCES if result.differences and not args.remirror else exits.OK


def _restore(args: argparse.Namespace) -> int:
    with _engine(args) as engine:
        host, port, path = _address(engine, args)
        os.makedirs(args.destination, exist_ok=True)
        conn = engine.connect(ReplicationSet(args.destination), host, port, path,
                              tls=True if args.tls else None)
        r = engine.restore(conn, args.destination, overwrite=args.overwrite)
        print(f"restored {r.files} files and {r.directories} folders ({r.bytes_fetched:,} bytes "
              f"fetched, {r.skipped} left as they were) in {r.seconds:.2f} s")
    return 0


def _target(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.root) and not args.create:
        raise InvalidParameterError(f"{args.root} does not exist; check the name, or pass "
                                    "--create to start a new target root there")
    engine = _engine(args)
    target = engine.start_target(args.root, host=args.host, port=args.port,
                                 tls=True if args.tls else None, apply_threads=args.apply_threads)
    print(f"dtcore target serving {os.path.abspath(args.root)} on {target.host}:{target.port}",
          flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    engine.close()
    return 0


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535)")
    return int(text)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--conf", help="the DT.conf to use (default: $DTCORE_CONF or /etc/DT/DT.conf)")
    p.add_argument("--secret-file", help="file holding the shared secret (default: $DTCORE_SECRET)")
    p.add_argument("--tls", action="store_true", help="encrypt the connection (EncryptNetworkData 1)")


def _source_args(p: argparse.ArgumentParser, first: str, help_first: str) -> None:
    p.add_argument(first, help=help_first)
    p.add_argument("target", metavar="HOST[:PORT][:TARGETPATH]", help="the target and the path beneath its root")
    p.add_argument("--rule", action="append", help="replication set rule PATH[,Inc|Exc][,Rec] (repeatable)")
    p.add_argument("--exclude", action="append", metavar="PATTERN",
                   help="leave out what matches, at any depth (the rule PATTERN,Exc,Rec)")
    p.add_argument("--include", action="append", metavar="PATTERN",
                   help="keep what matches despite an --exclude (PATTERN,Inc,Rec)")
    p.add_argument("--allow-root", action="store_true",
                   help="allow an address without a target path: work in the target's root")
    _common(p)


def add_engine_commands(sub: Any) -> None:
    t = sub.add_parser("target", help="run a target service")
    t.add_argument("--root", required=True, help="folder the target writes beneath")
    t.add_argument("--create", action="store_true", help="make the root folder if it is missing")
    t.add_argument("--port", type=_port, default=None,
                   help="TCP port, 0 for any free one (default NetPort, 1500)")
    t.add_argument("--host", default="0.0.0.0", help="address to listen on")
    t.add_argument("--apply-threads", type=int, default=APPLY_THREADS,
                   help=f"threads applying each connection's ops (default {APPLY_THREADS})")
    _common(t)
    t.set_defaults(run=_target)

    m = sub.add_parser("mirror", help="mirror a folder to a target")
    _source_args(m, "source", "the replication set's root folder")
    kind = m.add_mutually_exclusive_group()
    kind.add_argument("--full", action="store_true", help="send every file")
    kind.add_argument("--difference", action="store_true", help="send only what differs (default)")
    m.add_argument("--checksum", action=argparse.BooleanOptionalAction, default=None,
                   help="compare by block checksums (ChecksumAll) rather than size and time")
    m.add_argument("--orphans", action="store_true", help="remove (or move) files only the target has")
    m.add_argument("-n", "--dry-run", action="store_true",
                   help="list what would be sent and removed, and change nothing")
    m.set_defaults(run=_mirror)

    rp = sub.add_parser("replicate", help="mirror a folder, then replicate every change to it")
    _source_args(rp, "source", "the replication set's root folder")
    kind = rp.add_mutually_exclusive_group()
    kind.add_argument("--full", action="store_true", help="start with a full mirror")
    kind.add_argument("--difference", action="store_true",
                      help="start with a difference mirror (default)")
    rp.add_argument("--checksum", action=argparse.BooleanOptionalAction, default=None,
                    help="compare by block checksums in the initial mirror (ChecksumAll)")
    rp.add_argument("--orphans", action="store_true",
                    help="remove (or move) files only the target has, in the initial mirror")
    rp.add_argument("--watch", choices=("auto", "fanotify", "inotify"), default="auto",
                    help="how changes are captured (default: fanotify when permitted, else inotify)")
    rp.add_argument("--coalesce", type=float, default=20, metavar="MS",
                    help="take a file's data once its writes paused this long (default 20 ms)")
    rp.add_argument("--interval", type=float, default=1.0, metavar="S",
                    help="seconds between status lines (default 1)")
    rp.add_argument("--drain-timeout", type=float, default=30, metavar="S",
                    help="on stopping, wait this long for the target to apply the queue "
                         "(default 30 s); the rest stays in the journal")
    rp.set_defaults(run=_replicate)

    v = sub.add_parser("verify", help="compare a folder with its target copy (DTVerify.log)")
    _source_args(v, "source", "the replication set's root folder")
    v.add_argument("--remirror", action="store_true", help="send what differs")
    v.add_argument("--log-dir", help="where DTVerify.log goes (default LogDir)")
    v.set_defaults(run=_verify)

    r = sub.add_parser("restore", help="copy a target path back to a folder")
    _source_args(r, "destination", "the folder to restore into")
    r.add_argument("--overwrite", type=int, choices=(0, 1, 2), default=None,
                   help="RestoreOverwrite: 0 never, 1 always, 2 if the target copy is newer")
    r.set_defaults(run=_restore)
