"""The flags people reach for, run as processes: --json, -i, -q, -v,
--timeout, --retries, --no-compress; what the bar and verify tell; special
files reported; a per-user log folder when /var/log/DT is out of reach."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from commandline import env, one_line, run, start_target
from dtcore.cli import exits

pytestmark = pytest.mark.timeout(120)


def _mirror(src, port, tmp_path, *flags, **settings):
    return run(["mirror", str(src), f"127.0.0.1:{port}:job", *flags], tmp_path, **settings)


def test_json_summary_and_itemize(tmp_path, src, target):
    (src / "sub").mkdir()
    (src / "sub" / "b.txt").write_bytes(b"b" * 5000)
    os.symlink("a.txt", src / "ln")
    out = _mirror(src, target, tmp_path, "--full", "--json", "-i")
    assert out.returncode == exits.OK, out.stderr
    lines = out.stdout.splitlines()
    summary = json.loads(lines[-1])
    assert summary["schema"] == 1 and summary["exit"] == 0 and summary["reason"] == "ok"
    assert summary["files"] == 3 and summary["directories"] == 1
    assert summary["transfer"]["whole"] == 3 and summary["bytes_sent"] >= 6000
    assert summary["seconds"] > 0 and summary["given_up"] == []
    items = {tuple(line.split()) for line in lines[:-1]}
    assert items == {("mkdir", "sub"), ("whole", "a.txt"), ("whole", "sub/b.txt"),
                     ("symlink", "ln")}
    (src / "a.txt").write_bytes(b"A" * 1000)
    (tmp_path / "tgt" / "job" / "orphan").write_bytes(b"o")
    out = _mirror(src, target, tmp_path, "-i", "-q", "--orphans", "--no-checksum")
    assert out.returncode == exits.OK and out.stderr == ""
    assert {tuple(line.split()) for line in out.stdout.splitlines()} == {
        ("whole", "a.txt"), ("remove", "orphan")}


def test_json_after_a_failure_names_the_exit_and_reason(tmp_path, src, target):
    out = _mirror(src, target, tmp_path, "--json", secret="wrong")
    assert out.returncode == exits.AUTHENTICATION
    summary = json.loads(out.stdout)
    assert summary["exit"] == exits.AUTHENTICATION and "-138" in summary["reason"]


def test_quiet_prints_nothing_and_verbose_prints_events(tmp_path, src, target):
    out = _mirror(src, target, tmp_path, "-q")
    assert out.returncode == exits.OK and out.stdout == "" and out.stderr == ""
    out = _mirror(src, target, tmp_path, "-v")
    assert out.returncode == exits.OK
    assert "INFO 4016" in out.stderr and "4023" in out.stderr  # connected, mirror complete


def test_a_quiet_mirror_imports_no_terminal_drawing(tmp_path, src, target):
    """rich (about 80 ms of imports) is loaded only by a command that draws,
    ssl (several ms) only by a connection that uses TLS."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "dtcore.cli.main", "mirror",
                          "-q", str(src), f"127.0.0.1:{target}:job"],
                         env=env(tmp_path), capture_output=True, text=True, timeout=60)
    assert out.returncode == exits.OK, out.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines()
                if line.startswith("import time:")}
    assert "dtcore.engine" in imported
    assert not {m for m in imported if m.split(".")[0] == "rich"}
    assert "importlib.resources" not in imported
    assert "ssl" not in imported and "_ssl" not in imported


def test_the_bar_shows_files_and_bytes_and_verify_says_where_its_log_is(tmp_path, src, target):
    out = _mirror(src, target, tmp_path, "--full")
    assert out.returncode == exits.OK
    assert "1/1 files" in out.stderr and "kB" in out.stderr  # bytes done of bytes to go
    out = run(["verify", str(src), f"127.0.0.1:{target}:job"], tmp_path)
    log = tmp_path / "logs" / "DTVerify.log"
    assert out.returncode == exits.OK and f"listed in {log}" in out.stdout and log.exists()


def test_no_compress_sends_plain_bytes(tmp_path, src, target):
    (src / "a.txt").write_bytes(b"compressible text " * 20000)
    wire = {}
    for flags in (("--compress", "always"), ("--no-compress",), ("--compress", "never")):
        out = _mirror(src, target, tmp_path, "--full", "--json", *flags)
        summary = json.loads(out.stdout)
        wire[flags[-1]] = summary["bytes_on_wire"] / summary["bytes_sent"]
    assert wire["always"] < 0.2 and wire["--no-compress"] >= 1 and wire["never"] >= 1


def test_special_files_are_reported_not_skipped_in_silence(tmp_path, src, target):
    os.mkfifo(src / "pipe")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(src / "sock"))
        out = _mirror(src, target, tmp_path, "--full")
        assert out.returncode == exits.OK
        assert "left out 2 special files (fifo, socket)" in out.stderr
        summary = json.loads(_mirror(src, target, tmp_path, "--json").stdout)
    assert summary["skipped_special"] == 2


def test_a_full_target_fails_the_command_promptly_with_the_reason(tmp_path, src, small_disk):
    """The target retries a write to a full disk for ever (TGExecutionRetryLimit
    0); the command gives up after --retries attempts, says why in one line
    (code, path, errno) and exits 6, well before the target would."""
    (src / "big.bin").write_bytes(os.urandom(3 << 20))
    proc, port = start_target(small_disk, tmp_path, TGRetryLocked=1)
    try:
        started = time.monotonic()
        out = _mirror(src, port, tmp_path, "--full", "--retries", "2")
        took = time.monotonic() - started
    finally:
        proc.terminate()
        proc.wait(10)
    line = [x for x in out.stderr.splitlines() if "big.bin" in x][-1]
    assert out.returncode == exits.REFUSED, out.stderr
    assert "[-173]" in line and "errno 28" in line and "No space left" in line
    assert took < 30
    assert "target retrying big.bin" in out.stderr  # the bar said so while it waited


def test_timeout_ends_a_stalled_command(tmp_path, src):
    """A target that accepts and then never answers: --timeout 2 ends the
    command with exit 8 in about two seconds, not the 30 s handshake limit."""
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        started = time.monotonic()
        out = run(["mirror", str(src), f"127.0.0.1:{silent.getsockname()[1]}:x", "--timeout", "2"],
                  tmp_path)
        took = time.monotonic() - started
    finally:
        silent.close()
    assert out.returncode == exits.TIMEOUT and "--timeout" in one_line(out)
    assert took < 10


def test_logs_go_to_a_folder_of_the_users_own_when_log_dir_is_out_of_reach(tmp_path):
    """With /var/log read-only (a read-only tmpfs over it, in a mount
    namespace of the test's own) and LogDir left at its default, logs go
    beneath ~/.local/state, and verify says so; a LogDir set in DT.conf or
    the environment is kept as it is."""
    home = tmp_path / "home"
    code = ("from dtcore.control.config import Config, log_dir\n"
            "print(log_dir(Config(None)))\n"
            "print(log_dir(Config(None, LogDir='/var/log/DT')))\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DTCORE_", "XDG_"))}
    script = f"mount -t tmpfs -o ro tmpfs /var/log && exec {sys.executable} -c \"$0\""
    out = subprocess.run(["unshare", "--mount", "sh", "-c", script, code],
                         env={**environ, "HOME": str(home)}, capture_output=True, text=True,
                         timeout=60)
    if "unshare failed" in out.stderr or "mount:" in out.stderr:
        pytest.skip(f"no private mount namespace here: {out.stderr.strip()}")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [str(home / ".local" / "state" / "dtcore" / "log"),
                                       "/var/log/DT"]
