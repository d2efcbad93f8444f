"""Running the commands as people do, in subprocesses, for the CLI tests."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

SECRET = "cli-test-secret"
EXE = [sys.executable, "-m", "dtcore.cli.main"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(tmp_path, secret=SECRET, **settings):
    """The environment of a command: the shared secret, logs in the test's
    folder, live statistics on a free port of its own (not StatsPort 1506,
    which another test's target may hold), and settings as DTCORE_<NAME>
    variables."""
    return {**os.environ, "DTCORE_SECRET": secret, "DTCORE_LOGDIR": str(tmp_path / "logs"),
            "DTCORE_STATSPORT": str(free_port()),
            **{f"DTCORE_{k.upper()}": str(v) for k, v in settings.items()}}


def run(args, tmp_path, secret=SECRET, timeout=60, **settings):
    return subprocess.run([*EXE, *args], env=env(tmp_path, secret, **settings),
                          capture_output=True, text=True, timeout=timeout)


def one_line(out):
    """The command failed with a single line on stderr and no traceback
    (the progress bar and the target service's INFO events aside)."""
    bar = re.compile(r"\d+%|━|^\d{4}-\d\d-\d\d [\d:,]+ INFO ")
    lines = [line for line in out.stderr.splitlines() if not bar.search(line)]
    assert "Traceback" not in out.stderr and len(lines) == 1, out.stderr
    return lines[0]


def start_target(root, tmp_path, host="127.0.0.1", **settings):
    """A ``dtcore target`` process on a free port: (process, port).  Its
    events go to target.log in the test's folder."""
    with open(tmp_path / "target.log", "ab") as log:
        proc = subprocess.Popen([*EXE, "target", "--root", str(root), "--create", "--port", "0",
                                 "--host", host], env=env(tmp_path, **settings),
                                stdout=subprocess.PIPE, stderr=log, text=True)
    return proc, int(proc.stdout.readline().rsplit(":", 1)[1])
