"""SNMP through the real NET-SNMP tools: Debian's snmpd as the AgentX master,
snmpget, snmpwalk and snmpbulkwalk as the manager, snmptrapd receiving the
traps, snmptranslate reading dt.mib.  Everything on 127.0.0.1, on free ports,
with the master's socket in the test's folder."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest
from tests.commandline import EXE, env

from dtcore import Engine
from dtcore.control import snmp
from dtcore.control.stats import Statistics

TOOLS = ("snmpd", "snmpget", "snmpwalk", "snmpbulkwalk", "snmptrapd", "snmptranslate")
MIBS = ["-M", str(snmp.MIB_FILE.parent), "-m", "NSI-MIB"]


@pytest.fixture(autouse=True)
def _tools():
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{', '.join(missing)} missing: `make test-tools` installs snmpd and snmp")
        pytest.skip(f"{', '.join(missing)} not installed (Debian's snmpd, snmp, snmptrapd)")


def _free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, seconds=10.0, what="condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Snmp:
    """snmpd (master agentx) and snmptrapd for one test."""

    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.master = str(tmp_path / "agentx-master")
        self.port, self.trap_port = _free_udp_port(), _free_udp_port()
        self.traps = tmp_path / "traps.log"
        (tmp_path / "snmpd.conf").write_text(
            f"agentAddress udp:127.0.0.1:{self.port}\nmaster agentx\n"
            f"agentXSocket unix:{self.master}\nrocommunity public 127.0.0.1\n"
            f"trap2sink 127.0.0.1:{self.trap_port} public\n")
        (tmp_path / "snmptrapd.conf").write_text("disableAuthorization yes\n")
        self.trapd = subprocess.Popen(
            ["snmptrapd", "-f", "-C", "-c", str(tmp_path / "snmptrapd.conf"), "-Lf",
             str(self.traps), *MIBS, f"udp:127.0.0.1:{self.trap_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.snmpd = None
        self.start_snmpd()

    def start_snmpd(self):
        self.snmpd = subprocess.Popen(
            ["snmpd", "-f", "-C", "-c", str(self.dir / "snmpd.conf"), "-Lf",
             str(self.dir / "snmpd.log"), "-p", str(self.dir / "snmpd.pid"), "-M", "", "-m", ""],
            env={**os.environ, "SNMP_PERSISTENT_DIR": str(self.dir / "persist")},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: os.path.exists(self.master), what="snmpd's AgentX socket")

    def kill_snmpd(self):
        self.snmpd.send_signal(signal.SIGKILL)
        self.snmpd.wait(10)
        os.unlink(self.master)

    def tool(self, name, *args, check=True):
        out = subprocess.run([name, "-v2c", "-c", "public", "-t", "2", "-r", "1", *MIBS,
                              f"127.0.0.1:{self.port}", *args],
                             capture_output=True, text=True, timeout=30)
        assert not check or out.returncode == 0, out.stderr
        return out.stdout

    def trap_lines(self):
        return self.traps.read_text().splitlines() if self.traps.exists() else []

    def wait_trap(self, name, count=1):
        def seen():
            return [line for line in self.trap_lines() if f"NSI-MIB::{name}\t" in line or
                    line.endswith(f"NSI-MIB::{name}")]
        return _wait(lambda: len(seen()) >= count and seen(), 15, f"trap {name} x{count}")

    def close(self):
        for p in (self.snmpd, self.trapd):
            if p.poll() is None:
                p.terminate()
                p.wait(10)


@pytest.fixture
def agent(tmp_path):
    s = Snmp(tmp_path)
    yield s
    s.close()


def _walk(text):
    """{object name: (instance, type, value)} from snmpwalk's output."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"NSI-MIB::(\w+)\.(\d+) = (\w+): (.*)", line)
        if m:
            out[m[1], int(m[2])] = (m[3], m[4])
    return out


def test_snmptranslate_resolves_every_object_and_notification_in_dt_mib():
    names = {n: snmp.GENERAL + (arc,) for arc, (n, *_) in enumerate(snmp.SCALARS, 1)}
    names |= {n: snmp.ENTRY + (arc,) for arc, (n, *_) in enumerate(snmp.COLUMNS, 2)}
    names |= {"dtconIndex": snmp.ENTRY + (1,), "dtConnectionCount": snmp.CONNECTION_COUNT,
              "dtEventId": snmp.EVENT_ID[:-1], "dtEventMessage": snmp.EVENT_MESSAGE[:-1]}
    names |= snmp.TRAP_OIDS
    out = subprocess.run(["snmptranslate", *MIBS, "-On", *(f"NSI-MIB::{n}" for n in names)],
                         capture_output=True, text=True, timeout=30)
    # the MIB loads without a warning (a first run of net-snmp on a fresh
    # machine also says it created its state folder: that is no warning)
    warnings = [line for line in out.stderr.splitlines() if not line.startswith("Created directory:")]
    assert out.returncode == 0 and warnings == [], out.stderr
    assert out.stdout.split() == ["." + ".".join(map(str, oid)) for oid in names.values()]
    # and the MIB holds nothing the agent does not know about (groups and nodes aside)
    every = subprocess.run(["snmptranslate", *MIBS, "-Tz"], capture_output=True, text=True,
                           timeout=30).stdout
    in_mib = {line.split('"')[1] for line in every.splitlines()
              if '"1.3.6.1.4.1.2592.' in line and not line.split('"')[1].endswith("Group")}
    nodes = {"dtGeneral", "dtConnections", "dtTraps", "dtTrapPrefix", "dtTrapObjects",
             "dtConformance", "dtconTable", "dtconEntry"}
    assert in_mib - nodes == set(names)
    # the guide's own name for the check
    assert subprocess.run(["snmptranslate", *MIBS, "-IR", "-On", "dtGeneral.dtUpTime.0"],
                          capture_output=True, text=True).stdout.strip() == \
        "." + ".".join(map(str, snmp.GENERAL + (1, 0)))


def test_every_trap_said_to_be_sent_has_an_event_that_is_emitted():
    """A trap tied to an event ID must be reachable: the ID appears in the
    code outside the catalogue (in an emit, or the applier's table of retry
    events)."""
    package = snmp.MIB_FILE.parent.parent.parent
    text = "".join(p.read_text() for p in package.rglob("*.py")
                   if p.name not in ("catalogue.py", "snmp.py"))
    for name, by in snmp.TRAP_LIST:
        if isinstance(by, int):
            assert re.search(rf"(?<![\w.]){by}(?![\w.])", text), name


def test_a_running_engine_answers_snmpd_with_its_statistics_and_sends_its_traps(
        agent, tmp_path, monkeypatch):
    monkeypatch.setenv("DTCORE_SECRET", "snmp-test")
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    for i in range(5):
        (src / f"f{i}").write_bytes(os.urandom(20_000))
    with Engine(log=False, statistics=False) as engine:
        engine.serve_snmp(agent.master)
        assert engine.snmp.subagent.connected.wait(10)
        target = engine.start_target(dst, port=0)
        repset = engine.replication_set(src)
        conn = engine.connect(repset, port=target.port)
        engine.mirror(conn, repset, "full")
        (dst / "f0").write_bytes(b"changed on the target")
        engine.verify(conn, repset)
        time.sleep(1.1)  # past the agent's one-second snapshot

        # the guide's check, on this snmpd's port
        up = agent.tool("snmpget", "dtGeneral.dtUpTime.0")
        assert re.fullmatch(r"NSI-MIB::dtUpTime\.0 = Timeticks: \(\d+\) [\d:.]+\n", up), up

        snap = engine.statistics()
        walked = _walk(agent.tool("snmpwalk", "NSI-MIB::nsi"))
        server = {name: snap.value("server", stat) for name, _, stat in snmp.SCALARS
                  if not stat.startswith("+") and stat not in ("StartTime", "ActFailCount")}
        for name, value in server.items():
            kind, text = walked[name, 0]
            number = int(re.search(r"\d+", text.split("(")[-1])[0])
            if name == "dtCurrentMemoryUsageMB":
                value = int(value) >> 20
            assert number == int(value), (name, text, value)
        assert walked["dtSourceState", 0] == ("INTEGER", "runningWithoutDriver(1)")
        assert walked["dtTargetState", 0] == ("INTEGER", "running(1)")
        assert int(walked["dtMirOpsGenerated", 0][1]) >= 5
        assert ("dtActFailCount", 0) not in walked  # no licence keys: not served
        assert walked["dtConnectionCount", 0] == ("Gauge32", "1")
        row = snap.connection_ids.index(conn.id)
        assert walked["dtconIpAddress", conn.id] == ("IpAddress", "127.0.0.1")
        assert walked["dtconState", conn.id] == ("INTEGER", "active(1)")
        for name, _, stat in snmp.COLUMNS[3:]:
            text = walked[name, conn.id][1]
            assert int(text.split()[0]) == int(snap.value("connection", stat, row)), name
        assert int(walked["dtconBytesTx", conn.id][1].split()[0]) > 100_000
        # GetBulk and a Get of an object this engine cannot give
        assert _walk(agent.tool("snmpbulkwalk", "NSI-MIB::dtconTable")) == \
            {k: v for k, v in walked.items() if k[0].startswith("dtcon")}
        assert "No Such Instance" in agent.tool("snmpget", "NSI-MIB::dtActFailCount.0")
        for trap in ("dttrapKernelStarted", "dttrapTargetStarted", "dttrapConnectionSucceeded",
                     "dttrapSourceStarted", "dttrapMirrorStart", "dttrapMirrorEnd",
                     "dttrapVerificationStart", "dttrapVerificationEnd",
                     "dttrapVerificationFailure"):
            agent.wait_trap(trap)
    for trap in ("dttrapConnectionLost", "dttrapTargetStopped", "dttrapSourceStopped",
                 "dttrapKernelStopped"):
        agent.wait_trap(trap)
    lines = agent.trap_lines()
    started = next(line for line in lines if "dttrapKernelStarted" in line)
    assert "NSI-MIB::dtEventId.0 = Gauge32: 4000" in started
    mirror_end = next(line for line in lines if "dttrapMirrorEnd" in line)
    assert "dtEventId.0 = Gauge32: 4023" in mirror_end and "5 files" in mirror_end


def test_the_subagent_waits_for_snmpd_and_registers_again_after_it_is_killed(agent):
    agent.kill_snmpd()
    with Engine(log=False, statistics=False) as engine:
        sub = engine.serve_snmp(agent.master).subagent
        time.sleep(0.5)
        assert not sub.connected.is_set()
        agent.start_snmpd()
        assert sub.connected.wait(15)
        assert "Timeticks" in agent.tool("snmpget", "NSI-MIB::dtUpTime.0")
        agent.wait_trap("dttrapKernelStarted", 1)
        agent.kill_snmpd()
        _wait(lambda: not sub.connected.is_set(), 10, "the sub-agent to notice")
        agent.start_snmpd()
        assert sub.connected.wait(15)
        assert "Timeticks" in agent.tool("snmpget", "NSI-MIB::dtUpTime.0")
        # a new master hears that the engine is up
        agent.wait_trap("dttrapKernelStarted", 2)


def test_memory_traps_follow_the_disk_queue():
    stats = Statistics()
    conn = stats.connection(1, "127.0.0.1:1500")
    sent = []
    agent = snmp.SnmpAgent(stats, "/nonexistent/master")
    agent.trap = lambda name, event_id, message: sent.append(name)
    agent.CHECK_SECONDS = 0.05
    agent._thread.start()
    try:
        conn["conBytesInDiskQueue"] = 4096
        _wait(lambda: sent == ["dttrapMemoryLimitReached"], 5, "the limit trap")
        conn["conBytesInDiskQueue"] = 0
        _wait(lambda: sent == ["dttrapMemoryLimitReached", "dttrapMemoryLimitRemedied"], 5,
              "the remedied trap")
    finally:
        agent.stop()


def test_dtcore_target_serves_snmp_from_the_command_line(agent, tmp_path):
    with open(tmp_path / "target.err", "wb") as err:
        proc = subprocess.Popen([*EXE, "target", "--root", str(tmp_path / "root"), "--create",
                                 "--port", "0", "--snmp", agent.master], env=env(tmp_path),
                                stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        proc.stdout.readline()
        _wait(lambda: "running(1)" in agent.tool("snmpget", "NSI-MIB::dtTargetState.0",
                                                   check=False), 15, "the target's sub-agent")
        agent.wait_trap("dttrapKernelStarted")
    finally:
        proc.terminate()
        proc.wait(30)
    agent.wait_trap("dttrapKernelStopped")
    assert "SNMP sub-agent" in (tmp_path / "target.err").read_text()
    assert subprocess.run([*EXE, "mib"], capture_output=True, text=True).stdout.strip() == \
        str(snmp.MIB_FILE)
