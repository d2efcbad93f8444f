"""The ``dtcore`` command line: ``dtcore config show | get NAME | set NAME
VALUE``, ``dtcore logviewer ...`` (the same as ``logviewer``), ``dtcore
mib`` (where dt.mib is), and the engine: ``dtcore target``, ``dtcore mirror``, ``dtcore verify`` and
``dtcore restore`` (in :mod:`dtcore.cli.commands`)."""
from __future__ import annotations

import argparse
import atexit
import os
import sys
import threading
from typing import NoReturn, Sequence

from dtcore._version import __version__
from dtcore.cli import exits
from dtcore.cli.watchdog import Stalled
from dtcore.errors import DTError


def _config(args: argparse.Namespace) -> int:
    from dtcore.control import settings
    from dtcore.control.config import Config, default_path
    path = args.conf or default_path()
    config = Config(path)
    if args.action == "show":
        width = max(map(len, settings.SETTINGS))
        print(f"{'setting':<{width}}  {'value':<12}  {'origin':<13}  {'use':<8}  allowed")
        for name, s in settings.SETTINGS.items():
            use = f"{s.use}, restart" if s.restart and s.use == settings.ENGINE else s.use
            print(f"{name:<{width}}  {config.text(name):<12}  {'[' + config.origin(name) + ']':<13}  "
                  f"{use:<8}  {s.allowed()}")
        print("use: engine = the running engine acts on it; not yet = accepted, but nothing "
              "reads it so far; ignored = unused on Linux.  restart = used after a restart.")
        return 0
    name = settings.canonical(args.name)
    if name is None:
        print(f"dtcore config: {args.name} is not a setting", file=sys.stderr)
        return 2
    if args.action == "get":
        print(config.text(name))
        return 0
    restart = config.set(name, args.value)
    config.save(path)
    use = settings.SETTINGS[name].use
    print(f"{name}={config.text(name)} written to {path}"
          + ("; the engine uses it after a restart" if restart else "")
          + ("; nothing in dtcore reads it yet, so it changes nothing" if use == settings.NOT_YET
             else "; dtcore does not use it on Linux" if use == settings.IGNORED else ""))
    return 0


def _mib(args: argparse.Namespace) -> int:
    from importlib import resources  # here: every other command would pay its import
    print(resources.files("dtcore.control") / "mibs" / "dt.mib")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dtcore", description="dtcore replication engine",
                                epilog=exits.epilog(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"dtcore {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("config", help="show or change settings in DT.conf")
    c.add_argument("--conf", help="the DT.conf to use (default: $DTCORE_CONF or /etc/DT/DT.conf)")
    csub = c.add_subparsers(dest="action", required=True)
    csub.add_parser("show", help="every setting, its value, where it came from and what it allows")
    g = csub.add_parser("get", help="one setting's value")
    g.add_argument("name")
    s = csub.add_parser("set", help="change a setting in DT.conf")
    s.add_argument("name")
    s.add_argument("value")
    sub.add_parser("logviewer", help="filter and follow the engine log", add_help=False)
    sub.add_parser("mib", help="print where dt.mib (NSI-MIB) is, for the mibdirs of snmpd, "
                               "snmptrapd and SNMP managers").set_defaults(run=_mib)
    from dtcore.cli.commands import add_engine_commands
    add_engine_commands(sub)
    return p


def _logging(args: argparse.Namespace) -> None:
    """Events on stderr: always for the target service (its log for
    journald), for the other commands with -v (INFO) or -vv (DEBUG)."""
    verbose = getattr(args, "verbose", 0)
    if not verbose and args.command != "target":
        return
    import logging
    level = logging.DEBUG if verbose > 1 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log = logging.getLogger("dtcore")
    log.addHandler(handler)
    log.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["logviewer"]:
        from dtcore.cli.logviewer import main as logviewer
        return logviewer(argv[1:])
    args = build_parser().parse_args(argv)
    _logging(args)
    args.outcome = None
    args.reason = "ok"
    code = exits.ERROR
    try:
        if args.command != "config":
            code = int(args.run(args))
        else:
            code = _config(args)
    except KeyboardInterrupt:
        args.reason = "interrupted"
        print(f"dtcore {args.command}: interrupted", file=sys.stderr)
        code = exits.INTERRUPTED
    except BrokenPipeError:  # the reader went away (| head): say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return exits.ERROR
    except Stalled as e:
        args.reason = str(e)
        print(f"dtcore {args.command}: {e}", file=sys.stderr)
        code = exits.TIMEOUT
    except (DTError, OSError, TimeoutError) as e:
        what = e if isinstance(e, DTError) or not isinstance(e, OSError) else \
            f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
        args.reason = str(what)
        args.outcome = getattr(e, "result", None)
        print(f"dtcore {args.command}: {what}", file=sys.stderr)
        code = exits.code_for(e)
    if getattr(args, "json", False) and not getattr(args, "json_done", False):
        from dtcore.cli.report import print_summary
        print_summary(args.command, code, args.reason, args.outcome)
    return code


def entry() -> NoReturn:
    """The ``dtcore`` program: :func:`main`, then exit.  When the command
    has left no thread running, the interpreter's teardown is skipped: it
    frees every loaded module one by one (40 ms or more after a mirror)
    only for the process to end anyway.  What teardown would still do that
    matters runs first: the exit handlers, then flushing stdout and stderr."""
    code = main()
    if threading.active_count() > 1:
        sys.exit(code)
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # as the interpreter's own exit would report it
        code = 120
    os._exit(code)


if __name__ == "__main__":
    entry()
