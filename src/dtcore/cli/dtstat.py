"""``dtstat``: print, save and convert engine statistics.

Options as in the guide, case-insensitive: -p (do not print), -i SECONDS
(refresh interval, default 1), -l LEVEL, -t FILE (save snapshots to a binary
file), -f FILE (read a saved file instead of the live engine), -s FILE
(connection data to CSV), -st FILE (target data to CSV), -ip LIST (only
these peer addresses), -start / -stop "mm/dd/yyyy hh:mm" (time window),
-server IP PORT (the statistics server to ask; default 127.0.0.1 and
StatsPort).  Live, a snapshot is printed only when a counter has changed.
Extra: -count N stops after N live snapshots (for scripts)."""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import logging
import sys
import time
from typing import Iterable, Iterator, Sequence, TextIO

from dtcore.control import settings
from dtcore.control.stats import NOT_APPLICABLE, PERCENT_SCALE, Snapshot, names
from dtcore.control.stsfile import StatsFile, read
from dtcore.errors import DTError

_LOG_LEVELS = {0: logging.CRITICAL + 1, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}


def _when(t: int) -> str:
    return time.ctime(t) if t else "-"


def render(s: Snapshot) -> str:
    """One snapshot in the layout of the guide's sample output."""
    def v(name: str, sec: str = "server", row: int = 0) -> object:
        return "n/a" if name in NOT_APPLICABLE else s.value(sec, name, row)

    stamp = _dt.datetime.fromtimestamp(s.time)
    out = [f"{stamp:%m/%d/%y %H:%M:%S}:{stamp.microsecond // 1000:03d}",
           f"SYSTEMALLOCATOR::Total Bytes: {v('SystemAllocatorTotalBytes')}",
           f"IQALLOCATOR::Total Bytes: {v('IQAllocatorTotalBytes')}",
           f"SECURITY::Logins : {v('Logins')} FailedLogins : {v('FailedLogins')}",
           f"KERNEL::SourceState: {v('SourceState')} TargetState: {v('TargetState')} "
           f"Start Time: {_when(v('StartTime'))}",
           f"RepOpsGenerated: {v('RepOpsGenerated')} RepBytesGenerated: {v('RepBytesGenerated')}",
           f"MirOpsGenerated: {v('MirOpsGenerated')} MirBytesGenerated: {v('MirBytesGenerated')}",
           f"   FailedMirrorCount: {v('FailedMirrorCount')} FailedRepCount: {v('FailedRepCount')}",
           f"   ActFailCount: {v('ActFailCount')} TargetOpenHandles: {v('TargetOpenHandles')} "
           f"DriverQueuePercent: {v('DriverQueuePercent')}"]
    for i in range(len(s.targets)):
        t = lambda name: v(name, "target", i)  # noqa: E731
        out += [f"TARGET:: PeerAddress: {t('PeerAddress')} LocalAddress: {t('LocalAddress')}",
                f"   Ops Received: {t('Ops Received')} Mirror Ops Received: {t('Mirror Ops Received')}",
                f"   Retries: {t('Retries')} OpsDropped: {t('OpsDropped')} Ops Remaining: {t('Ops Remaining')}",
                f"   Orphan Files Removed: {t('Orphan Files Removed')} Orphan Directories Removed: "
                f"{t('Orphan Directories Removed')} Orphan Bytes Removed: {t('Orphan Bytes Removed')}",
                f"  Bytes In Target Queue: {t('Bytes In Target Queue')} Bytes In Target Disk Queue: "
                f"{t('Bytes In Target Disk Queue')} TasksSucceeded: {t('TasksSucceeded')} "
                f"TasksFailed: {t('TasksFailed')} TasksIgnored: {t('TasksIgnored')}"]
    out += [f"SOURCE::autoDisConnects: {v('autoDisConnects')} autoReConnects: {v('autoReConnects')}",
            f"   lastFileTouched : {v('lastFileTouched')}"]
    for i in range(len(s.connections)):
        c = lambda name: v(name, "connection", i)  # noqa: E731
        out += [f"CONNECTION:: conPeerAddress: {c('conPeerAddress')}",
                f"   connectTime: {_when(c('connectTime'))}",
                f"   conState: {c('conState')} conOpsInCmdQueue: {c('conOpsInCmdQueue')} "
                f"conOpsInAckQueue: {c('conOpsInAckQueue')}",
                f"   conOpsInRepQueue: {c('conOpsInRepQueue')} conOpsInMirQueue: {c('conOpsInMirQueue')} "
                f"conBytesInRepQueue: {c('conBytesInRepQueue')}",
                f"   conOpsTx: {c('conOpsTx')} conBytesInMirQueue: {c('conBytesInMirQueue')} "
                f"conBytesTx: {c('conBytesTx')}",
                f"   conBytesCompressedTx: {c('conBytesCompressedTx')}",
                f"   conOpsRx: {c('conOpsRx')} conBytesRx: {c('conBytesRx')} conResentOpCount: "
                f"{c('conResentOpCount')} conBytesInDiskQueue: {c('conBytesInDiskQueue')}",
                f"   conBandwidthLimit: {c('conBandwidthLimit')} conBytesSkipped: {c('conBytesSkipped')} "
                f"conMirrorBytesRemain: {c('conMirrorBytesRemaining')}",
                f"   conMirrorPercent: {int(c('conMirrorPercent')) / PERCENT_SCALE:.1f}%",
                f"   conTaskCmdsSubmitted: {c('conTaskCmdsSubmitted')} conTaskCmdsQueued: "
                f"{c('conTaskCmdsQueued')}",
                f"   conTasksSucceeded: {c('conTasksSucceeded')} conTasksFailed: {c('conTasksFailed')} "
                f"conTasksIgnored: {c('conTasksIgnored')}",
                f"   ConRPT: {_when(c('ConRPT'))} ConRPL: {c('ConRPL')} ConMirrorStartTime: "
                f"{_when(c('ConMirrorStartTime'))} ConMirrorEndTime: {_when(c('ConMirrorEndTime'))}"]
    return "\n".join(out) + "\n"


class CsvOut:
    """One section's rows (connection or target) as comma-separated values
    with a header row."""

    def __init__(self, path: str, section: str) -> None:
        self.section = section
        self.numeric, self.text = names(section, "n"), names(section, "s")
        self._f = open(path, "w", newline="")
        self._w = csv.writer(self._f)
        self._w.writerow(["Date/Time", *self.text, *self.numeric])

    def write(self, s: Snapshot) -> None:
        stamp = _dt.datetime.fromtimestamp(s.time).strftime("%m/%d/%Y %H:%M:%S")
        for values, text in (s.connections if self.section == "connection" else s.targets):
            self._w.writerow([stamp, *(text[t] for t in self.text), *values.tolist()])

    def close(self) -> None:
        self._f.close()


def _moment(text: str) -> float:
    for fmt in ("%m/%d/%Y%H:%M", "%m/%d/%Y %H:%M", "%m/%d/%Y"):
        try:
            return _dt.datetime.strptime(text, fmt).timestamp()
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"{text!r} is not mm/dd/yyyy hh:mm")


def _only(s: Snapshot, peers: set[str] | None) -> Snapshot:
    if not peers:
        return s
    return Snapshot(s.time, s.server, s.server_text,
                    [r for r in s.targets if r[1]["PeerAddress"] in peers],
                    [r for r in s.connections if r[1]["conPeerAddress"] in peers])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dtstat", description="dtcore statistics", add_help=False)
    p.add_argument("-p", action="store_true", help="do not print to the screen")
    p.add_argument("-i", type=float, default=1.0, metavar="SECONDS", help="live refresh interval")
    p.add_argument("-l", type=int, default=2, choices=range(4), metavar="LEVEL",
                   help="what dtstat itself logs: 0 nothing, 1 alerts, 2 also notices (default), 3 debug")
    p.add_argument("-t", metavar="FILE", help="save snapshots to this binary file")
    p.add_argument("-f", metavar="FILE", help="read snapshots from a saved binary file")
    p.add_argument("-s", metavar="FILE", help="connection data to a comma-separated file")
    p.add_argument("-st", metavar="FILE", help="target data to a comma-separated file")
    p.add_argument("-ip", type=lambda t: set(filter(None, t.split(","))), help="only these addresses")
    p.add_argument("-start", type=_moment, help="nothing before mm/dd/yyyy hh:mm")
    p.add_argument("-stop", type=_moment, help="nothing after mm/dd/yyyy hh:mm")
    p.add_argument("-server", nargs=2, metavar=("IP", "PORT"), help="the statistics server to ask")
    p.add_argument("-count", type=int, help="stop after this many live snapshots")
    p.add_argument("-help", "-h", action="help", help="show the options")
    return p


def _live(args: argparse.Namespace) -> Iterator[Snapshot]:
    from dtcore.control.statserver import StatsClient
    host, port = (args.server[0], int(args.server[1])) if args.server else \
        ("127.0.0.1", settings.default("StatsPort"))
    client = StatsClient(host, port)
    try:
        taken = 0
        while args.count is None or taken < args.count:
            yield client.snapshot()
            taken += 1
            if args.count is None or taken < args.count:
                time.sleep(args.i)
    finally:
        client.close()


def run(args: argparse.Namespace, out: TextIO) -> int:
    source: Iterable[Snapshot] = read(args.f) if args.f else _live(args)
    sinks = [CsvOut(path, sec) for path, sec in ((args.s, "connection"), (args.st, "target")) if path]
    saved = StatsFile(args.t, max_size=1 << 62, save_old=False) if args.t else None
    last: Snapshot | None = None
    try:
        for snap in source:
            if (args.start and snap.time < args.start) or (args.stop and snap.time > args.stop):
                continue
            snap = _only(snap, args.ip)
            if not args.f and snap.same_counts(last):
                continue  # nothing moved: stay quiet until it does
            last = snap
            if not args.p:
                out.write(render(snap))
                out.flush()
            for sink in sinks:
                sink.write(snap)
            if saved is not None:
                saved.append(snap)
    finally:
        for sink in sinks:
            sink.close()
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    raw = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args([a.lower() if a.startswith("-") else a for a in raw])
    logging.getLogger("dtcore").setLevel(_LOG_LEVELS[args.l])
    try:
        return run(args, out)
    except DTError as e:
        print(f"dtstat: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a missing or unreadable file: one line, no traceback
        print(f"dtstat: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""),
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
