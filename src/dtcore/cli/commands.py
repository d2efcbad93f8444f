"""The engine's commands and their options: ``dtcore target``, ``mirror``,
``replicate``, ``verify`` and ``restore``.  Building the parser imports
nothing heavy; a command's work (:mod:`dtcore.cli.run`) is imported only
once it runs, so ``--help`` and ``--version`` start at once."""
from __future__ import annotations

import argparse
import importlib
from typing import Any, Callable

from dtcore.apply import APPLY_THREADS

# A command's default: a full or read-only target fails it within about
# (RETRIES - 1) x TGRetryLocked seconds; a service keeps waiting.
RETRIES = 3


def _runs(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        return int(getattr(importlib.import_module("dtcore.cli.run"), name)(args))
    return run


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535)")
    return int(text)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--conf", help="the DT.conf to use (default: $DTCORE_CONF or /etc/DT/DT.conf)")
    p.add_argument("--secret-file", help="file holding the shared secret (default: $DTCORE_SECRET)")
    p.add_argument("--tls", action="store_true", help="encrypt the connection (EncryptNetworkData 1)")


def _output_args(p: argparse.ArgumentParser, itemize: bool = True) -> None:
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print nothing but errors (no bar, no tables)")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="print the engine's events on stderr (-vv: and debugging detail)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON summary on stdout at the end (also after a failure)")
    if itemize:
        p.add_argument("-i", "--itemize", action="store_true",
                       help="list each change made, and how (whole, block, attributes, ...)")
    p.add_argument("--timeout", type=float, default=0, metavar="S",
                   help="give up (exit 8) once nothing has moved for S seconds (default: never)")
    p.add_argument("--compress", choices=("auto", "always", "never"), default="auto",
                   help="lz4: when it pays on this link (auto, the default), whenever it "
                        "shrinks the data, or never")
    p.add_argument("--no-compress", action="store_const", const="never", dest="compress",
                   help="the same as --compress never")


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


def _checksum(p: argparse.ArgumentParser, when: str = "") -> None:
    p.add_argument("--checksum", action=argparse.BooleanOptionalAction, default=None,
                   help=f"compare by block checksums{when} (ChecksumAll) rather than size and "
                        "time")


def _retries(p: argparse.ArgumentParser) -> None:
    p.add_argument("--retries", type=int, default=RETRIES, metavar="N",
                   help="stop (exit 6) once the target has tried one op N times without "
                        f"success, each TGRetryLocked apart (default {RETRIES}; 0: keep waiting)")


def _snmp(p: argparse.ArgumentParser) -> None:
    p.add_argument("--snmp", nargs="?", const="", default=None, metavar="MASTER",
                   help="serve NSI-MIB (dtcore mib) and send its traps through snmpd's AgentX "
                        "socket MASTER (default /var/agentx/master; tcp:HOST:PORT for TCP)")


def add_engine_commands(sub: Any) -> None:
    t = sub.add_parser("target", help="run a target service")
    t.add_argument("--root", required=True, help="folder the target writes beneath")
    t.add_argument("--create", action="store_true", help="make the root folder if it is missing")
    t.add_argument("--port", type=_port, default=None,
                   help="TCP port, 0 for any free one (default NetPort, 1500)")
    t.add_argument("--host", default="0.0.0.0", help="address to listen on")
    t.add_argument("--apply-threads", type=int, default=APPLY_THREADS,
                   help=f"threads applying each connection's ops (default {APPLY_THREADS})")
    t.add_argument("--http-port", type=_port, default=None, metavar="PORT",
                   help="serve /metrics (Prometheus) and /api/status on this HTTP port of --host "
                        "(0: any free one)")
    _snmp(t)
    _common(t)
    t.set_defaults(run=_runs("target"))

    m = sub.add_parser("mirror", help="mirror a folder to a target")
    _source_args(m, "source", "the replication set's root folder")
    kind = m.add_mutually_exclusive_group()
    kind.add_argument("--full", action="store_true", help="send every file")
    kind.add_argument("--difference", action="store_true", help="send only what differs (default)")
    _checksum(m)
    m.add_argument("--orphans", action="store_true", help="remove (or move) files only the target has")
    m.add_argument("-n", "--dry-run", action="store_true",
                   help="list what would be sent and removed, and change nothing")
    _retries(m)
    _output_args(m)
    m.set_defaults(run=_runs("mirror"))

    rp = sub.add_parser("replicate", help="mirror a folder, then replicate every change to it")
    _source_args(rp, "source", "the replication set's root folder")
    kind = rp.add_mutually_exclusive_group()
    kind.add_argument("--full", action="store_true", help="start with a full mirror")
    kind.add_argument("--difference", action="store_true",
                      help="start with a difference mirror (default)")
    _checksum(rp, " in the initial mirror")
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
    rp.add_argument("--http-port", type=_port, default=None, metavar="PORT",
                    help="serve /metrics (Prometheus) and /api/status on this HTTP port (0: any free one)")
    rp.add_argument("--http-host", default="127.0.0.1",
                    help="the address the HTTP port listens on (default 127.0.0.1)")
    _snmp(rp)
    _output_args(rp, itemize=False)
    rp.set_defaults(run=_runs("replicate"))

    pr = sub.add_parser("profile", help="what a difference mirror would send, why, and how "
                                        "long it would take; changes nothing on the target")
    _source_args(pr, "source", "the replication set's root folder")
    _checksum(pr)
    pr.add_argument("--orphans", action="store_true",
                    help="count what orphan removal would remove")
    pr.add_argument("--top", type=int, default=10, metavar="N",
                    help="files and folders listed in each table (default 10)")
    pr.add_argument("--sample", type=int, default=0, metavar="N",
                    help="look at about N of the files that need a look, chosen at random, and "
                         "estimate the rest (with 95%% bounds); for sets too large to read whole")
    pr.add_argument("--cpu-profile", metavar="FILE",
                    help="write cProfile's view of the run (every thread) to FILE, for "
                         "python -m pstats or snakeviz; the report lists the busiest functions")
    pr.add_argument("--then-mirror", action="store_true",
                    help="then run the mirror for real and compare it with the prediction")
    pr.add_argument("--html", metavar="FILE",
                    help="also write the report as a page with plots (needs matplotlib: "
                         "pip install 'dtcore[html]')")
    _output_args(pr, itemize=False)
    pr.set_defaults(run=_runs("profile"))

    v = sub.add_parser("verify", help="compare a folder with its target copy (DTVerify.log)")
    _source_args(v, "source", "the replication set's root folder")
    v.add_argument("--remirror", action="store_true", help="send what differs")
    v.add_argument("--log-dir", help="where DTVerify.log goes (default LogDir)")
    _retries(v)
    _output_args(v)
    v.set_defaults(run=_runs("verify"))

    st = sub.add_parser("status", help="show a running engine: what it serves, its "
                                       "connections, and why one makes no progress")
    st.add_argument("address", metavar="HOST:PORT",
                    help="the engine's HTTP port (dtcore target/replicate --http-port)")
    st.add_argument("--json", action="store_true", help="print the document as it came")
    act = st.add_mutually_exclusive_group()
    act.add_argument("--pause", type=int, metavar="N",
                     help="first pause transmission on connection N (ops queue until resumed)")
    act.add_argument("--resume", type=int, metavar="N", help="first resume connection N")
    st.add_argument("--secret-file", help="file holding the engine's shared secret, which "
                                          "--pause and --resume present (default: $DTCORE_SECRET)")
    st.set_defaults(run=_runs("status"))

    r = sub.add_parser("restore", help="copy a target path back to a folder")
    _source_args(r, "destination", "the folder to restore into")
    r.add_argument("--overwrite", type=int, choices=(0, 1, 2), default=None,
                   help="RestoreOverwrite: 0 never, 1 always, 2 if the target copy is newer")
    _output_args(r, itemize=False)
    r.set_defaults(run=_runs("restore"))
