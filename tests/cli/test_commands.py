"""The commands as people run them, in subprocesses: one line on stderr and a
documented exit code for every failure, never a traceback; addresses parsed
strictly (IPv6 in brackets); one Ctrl-C stops at once."""
from __future__ import annotations

import configparser
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

from commandline import EXE, env, one_line, run, start_target
from dtcore.cli import exits
from dtcore.cli.main import build_parser

pytestmark = pytest.mark.timeout(120)


def test_addresses_are_parsed_strictly(tmp_path, src):
    for address, why in [("127.0.0.1:notaport:data", "not a port number"),
                         ("127.0.0.1:99999:data", "outside 1-65535"),
                         ("[::1:1500:data", "in brackets")]:
        out = run(["mirror", str(src), address], tmp_path)
        assert out.returncode == exits.USAGE and why in one_line(out), address


def test_ipv6_in_brackets(tmp_path, src):
    proc, port = start_target(tmp_path / "tgt", tmp_path, host="::1")
    try:
        out = run(["mirror", str(src), f"[::1]:{port}:six", "--full"], tmp_path)
        assert out.returncode == exits.OK, out.stderr
        assert (tmp_path / "tgt" / "six" / "a.txt").read_bytes() == b"a" * 1000
    finally:
        proc.terminate()
        proc.wait(10)


def test_failures_are_one_line_with_their_exit_code(tmp_path, src, target):
    out = run(["mirror", str(src), f"127.0.0.1:{target}:job"], tmp_path, secret="wrong")
    assert out.returncode == exits.AUTHENTICATION and "-138" in one_line(out)
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there now
    out = run(["mirror", str(src), f"127.0.0.1:{port}:job"], tmp_path)
    assert out.returncode == exits.NETWORK and "-145" in one_line(out)
    out = run(["target", "--root", str(tmp_path / "t2"), "--port", "99999"], tmp_path)
    assert out.returncode == exits.USAGE and "Traceback" not in out.stderr
    a_file = tmp_path / "file"
    a_file.write_text("x")
    out = run(["mirror", str(a_file), f"127.0.0.1:{target}:job"], tmp_path)
    assert out.returncode != 0 and "not a folder" in one_line(out)
    out = run(["verify", str(src), f"127.0.0.1:{target}:job", "--log-dir", str(a_file)], tmp_path)
    assert out.returncode != 0 and one_line(out)
    out = run(["target", "--root", "/proc/no-such-root", "--create"], tmp_path)
    assert out.returncode != 0 and one_line(out)
    out = subprocess.run([sys.executable, "-m", "dtcore.cli.dtstat", "-f", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "No such file" in one_line(out)


def test_config_show_into_a_closed_pipe(tmp_path):
    out = subprocess.run(" ".join([*EXE, "config", "show"]) + " | head -1", shell=True,
                         env=env(tmp_path), capture_output=True, text=True, timeout=60)
    assert out.stdout.count("\n") == 1 and "Traceback" not in out.stderr


def test_verify_differences_have_their_own_code(tmp_path, src, target):
    assert run(["mirror", str(src), f"127.0.0.1:{target}:job", "--full"], tmp_path).returncode == 0
    (tmp_path / "tgt" / "job" / "a.txt").write_bytes(b"b" * 1000)
    out = run(["verify", str(src), f"127.0.0.1:{target}:job"], tmp_path)
    assert out.returncode == exits.DIFFERENCES and "a.txt" in out.stdout


def test_a_partial_transfer_exits_7(tmp_path, src):
    (src / "big").write_bytes(os.urandom(3 << 20))
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\n"
            "from dtcore.cli.main import main\n"
            "sys.exit(main())\n")
    proc = subprocess.Popen([sys.executable, "-c", code, "target", "--root", str(tmp_path / "tgt"),
                             "--create", "--port", "0", "--host", "127.0.0.1"], env=env(tmp_path),
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline().rsplit(":", 1)[1])
        out = run(["mirror", str(src), f"127.0.0.1:{port}:job", "--full"], tmp_path)
        assert out.returncode == exits.PARTIAL
        assert "gave up" in one_line(out) and "big" in out.stderr
    finally:
        proc.terminate()
        proc.wait(10)


def test_one_ctrl_c_stops_at_once(tmp_path, src):
    """A target that never answers the handshake: Ctrl-C ends the command
    within a second or two with one line and 130."""
    silent = socket.create_server(("127.0.0.1", 0))
    proc = subprocess.Popen([*EXE, "mirror", str(src), f"127.0.0.1:{silent.getsockname()[1]}:x"],
                            env=env(tmp_path), stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=10)[1]
        assert proc.returncode == exits.INTERRUPTED
        assert time.monotonic() - started < 5
        assert "interrupted" in err and "Traceback" not in err
    finally:
        proc.kill()
        silent.close()


def test_the_version_is_the_distributions():
    import dtcore
    assert dtcore.__version__ == metadata.version("dtcore")


def test_version_and_python_dash_m(tmp_path):
    for exe in (EXE, [sys.executable, "-m", "dtcore"]):
        out = subprocess.run([*exe, "--version"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and re.fullmatch(r"dtcore \d+\.\d+\.\d+\n", out.stdout)


def test_a_missing_target_root_needs_create(tmp_path):
    out = run(["target", "--root", str(tmp_path / "typo"), "--port", "0"], tmp_path)
    assert out.returncode == exits.USAGE and "--create" in one_line(out)
    assert not (tmp_path / "typo").exists()
    proc = subprocess.Popen([*EXE, "target", "--root", str(tmp_path / "new"), "--create",
                             "--port", "0", "--host", "127.0.0.1"], env=env(tmp_path),
                            stdout=subprocess.PIPE, text=True)
    try:
        assert "serving" in proc.stdout.readline() and (tmp_path / "new").is_dir()
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_targets_root_needs_saying_and_never_loses_orphans(tmp_path, src, target):
    other = tmp_path / "tgt" / "someone-else"
    other.mkdir(parents=True)
    (other / "theirs.txt").write_bytes(b"another source's copy")
    out = run(["mirror", str(src), f"127.0.0.1:{target}"], tmp_path)
    assert out.returncode == exits.USAGE and "--allow-root" in one_line(out)
    out = run(["mirror", str(src), f"127.0.0.1:{target}", "--allow-root", "--orphans"], tmp_path)
    assert out.returncode == exits.USAGE and "orphan removal" in one_line(out)
    assert (other / "theirs.txt").exists()
    out = run(["mirror", str(src), f"127.0.0.1:{target}", "--allow-root"], tmp_path)
    assert out.returncode == exits.OK and (tmp_path / "tgt" / "a.txt").exists()


def test_restore_into_a_new_folder(tmp_path, src, target):
    assert run(["mirror", str(src), f"127.0.0.1:{target}:job", "--full"], tmp_path).returncode == 0
    dest = tmp_path / "restored" / "deeper"
    out = run(["restore", str(dest), f"127.0.0.1:{target}:job"], tmp_path)
    assert out.returncode == exits.OK, out.stderr
    assert (dest / "a.txt").read_bytes() == b"a" * 1000


def test_exclude_and_include_at_any_depth(tmp_path, src, target):
    (src / "deep" / "er").mkdir(parents=True)
    (src / "deep" / "er" / "x.swp").write_bytes(b"swap")
    (src / "deep" / "er" / "keep.swp").write_bytes(b"kept")
    (src / "top.swp").write_bytes(b"swap")
    out = run(["mirror", str(src), f"127.0.0.1:{target}:job", "--full", "--exclude", "*.swp",
               "--include", "deep/er/keep.swp"], tmp_path)
    assert out.returncode == exits.OK, out.stderr
    job = tmp_path / "tgt" / "job"
    assert (job / "a.txt").exists() and (job / "deep" / "er" / "keep.swp").exists()
    assert not (job / "top.swp").exists() and not (job / "deep" / "er" / "x.swp").exists()


def test_dry_run_lists_and_changes_nothing(tmp_path, src, target):
    assert run(["mirror", str(src), f"127.0.0.1:{target}:job", "--full"], tmp_path).returncode == 0
    job = tmp_path / "tgt" / "job"
    (src / "new").mkdir()
    (src / "new" / "b.txt").write_bytes(b"b" * 100_000)
    (src / "a.txt").write_bytes(b"A" * 1000)
    (job / "orphan.txt").write_bytes(b"o")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
              for p in job.rglob("*")}
    out = run(["mirror", str(src), f"127.0.0.1:{target}:job", "--orphans", "-n"], tmp_path)
    assert out.returncode == exits.OK, out.stderr
    planned = {tuple(line.split()[1:]) for line in out.stdout.splitlines() if line.startswith("would")}
    assert {("mkdir", "new"), ("whole", "new/b.txt"), ("remove", "orphan.txt")} <= planned
    assert any(path == "a.txt" for _, path in planned)
    after = {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
             for p in job.rglob("*")}
    assert after == before


def test_replicate_follows_changes_until_sigterm_and_says_it_drained(tmp_path, src, target):
    environ = {**env(tmp_path), "DTCORE_QJOURNALDIR": str(tmp_path / "q")}
    proc = subprocess.Popen([*EXE, "replicate", str(src), f"127.0.0.1:{target}:job",
                             "--interval", "0.2"], env=environ, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert "replicating" in proc.stdout.readline()
        (src / "new").mkdir()
        (src / "new" / "b.bin").write_bytes(os.urandom(100_000))
        with open(src / "a.txt", "ab") as f:
            f.write(b"more")
        os.rename(src / "new", src / "renamed")
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == exits.OK, err
    assert "stopped: every change was applied on the target" in out
    assert re.search(r"Ready +\d+ ops/s +[\d.]+ MB/s +queue .* RPO", err), err
    copy = tmp_path / "tgt" / "job"
    assert (copy / "renamed" / "b.bin").read_bytes() == (src / "renamed" / "b.bin").read_bytes()
    assert (copy / "a.txt").read_bytes() == b"a" * 1000 + b"more"


def test_sighup_makes_the_target_read_dt_conf_again(tmp_path):
    conf = tmp_path / "DT.conf"
    conf.write_text("TGRetryLocked=3\n")
    log = tmp_path / "target.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([*EXE, "target", "--root", str(tmp_path / "tgt"), "--create",
                                 "--port", "0", "--host", "127.0.0.1", "--conf", str(conf)],
                                env=env(tmp_path), stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        assert "serving" in proc.stdout.readline()
        conf.write_text("TGRetryLocked=7\nNetPort=1600\n")
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while "reloaded" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        line = next(x for x in log.read_text().splitlines() if "reloaded" in x)
        assert "TGRetryLocked=7" in line and "NetPort=1600" in line
        assert "(NetPort after a restart)" in line
        assert proc.poll() is None  # still serving
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0


def test_the_example_systemd_unit_runs_a_real_command_line_and_reloads_with_sighup():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(Path(__file__).parents[2] / "contrib" / "dtcore-target.service")
    argv = shlex.split(unit["Service"]["ExecStart"])
    args = build_parser().parse_args(argv[1:])
    assert os.path.basename(argv[0]) == "dtcore" and args.command == "target"
    assert args.root and args.secret_file and args.conf
    assert unit["Service"]["ExecReload"] == "/bin/kill -HUP $MAINPID"


def test_the_distribution_carries_the_license():
    assert "LICENSE" in (metadata.metadata("dtcore").get_all("License-File") or [])
    text = (Path(__file__).parents[2] / "LICENSE").read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY" in text
