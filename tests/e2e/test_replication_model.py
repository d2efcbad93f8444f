"""A hypothesis state machine drives random file operations through the
replication API (doing each on the real source folder too), with link cuts
and target restarts among them: after a drain the target equals the
source, no op was dropped, and every batch was applied once."""
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from dtcore.engine import Engine
from trees import entries

SECRET = "replication-model-secret"
NAMES = st.sampled_from(["a", "b", "c", "d"])


class ReplicationMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="dtcore-model-"))
        self.src, self.dst = self.tmp / "src", self.tmp / "dst"
        self.src.mkdir()
        self.engine = Engine(secret=SECRET, HBTTL=5)
        self.target = self.engine.start_target(self.dst, port=0)
        self.port = self.target.port
        self.repset = self.engine.replication_set(self.src)
        self.conn = self.engine.connect(self.repset, port=self.port, target_path="data")
        self.rep = self.engine.replicate(self.conn, self.repset, directory=str(self.tmp / "q"))
        self.target_up = True

    # -- what exists on the source ------------------------------------------------
    def _walk(self):
        """(files, folders) of the source, links not followed."""
        files, dirs = [], []
        for dirpath, dirnames, filenames in os.walk(self.src):
            rel = os.path.relpath(dirpath, self.src)
            for d in dirnames:
                p = os.path.normpath(os.path.join(rel, d))
                (files if os.path.islink(self.src / p) else dirs).append(p)
            files += [os.path.normpath(os.path.join(rel, f)) for f in filenames]
        links = [p for p in files if os.path.islink(self.src / p)]
        return sorted(set(files) - set(links)), sorted(dirs)

    def _files(self):
        return self._walk()[0]

    def _dirs(self):
        return self._walk()[1]

    def _place(self, data, name):
        dirs = self._dirs()
        folder = data.draw(st.sampled_from([""] + dirs))
        return os.path.join(folder, name) if folder else name

    # -- operations ---------------------------------------------------------------
    @rule(data=st.data(), name=NAMES, content=st.binary(max_size=3000))
    def create(self, data, name, content):
        path = self._place(data, name)
        if (self.src / path).exists():
            return
        with self.rep.open(path, "wb") as f:
            f.write(content)

    @rule(data=st.data(), name=NAMES)
    def mkdir(self, data, name):
        path = self._place(data, name)
        if (self.src / path).exists():
            return
        (self.src / path).mkdir()
        self.rep.mkdir(path, 0o755)

    @precondition(lambda self: self._files())
    @rule(data=st.data(), offset=st.integers(0, 5000), content=st.binary(min_size=1, max_size=2000))
    def overwrite(self, data, offset, content):
        path = data.draw(st.sampled_from(self._files()))
        with self.rep.open(path, "r+b", buffering=0) as f:
            f.seek(offset)
            f.write(content)

    @precondition(lambda self: self._files())
    @rule(data=st.data(), size=st.integers(0, 4000))
    def truncate(self, data, size):
        path = data.draw(st.sampled_from(self._files()))
        with self.rep.open(path, "r+b", buffering=0) as f:
            f.truncate(size)

    @precondition(lambda self: self._files() or self._dirs())
    @rule(data=st.data(), name=NAMES)
    def rename(self, data, name):
        old = data.draw(st.sampled_from(self._files() + self._dirs()))
        new = self._place(data, name)
        if (self.src / new).exists() or new == old or new.startswith(old + "/"):
            return
        os.rename(self.src / old, self.src / new)
        self.rep.rename(old, new)

    @precondition(lambda self: self._files())
    @rule(data=st.data())
    def delete(self, data):
        path = data.draw(st.sampled_from(self._files()))
        os.unlink(self.src / path)
        self.rep.delete(path)

    @precondition(lambda self: self._dirs())
    @rule(data=st.data())
    def rmdir(self, data):
        path = data.draw(st.sampled_from(self._dirs()))
        # as a program removes a tree, bottom up: each file, then its folder
        for dirpath, dirs, files in os.walk(self.src / path, topdown=False):
            for f in files:
                os.unlink(os.path.join(dirpath, f))
                self.rep.delete(os.path.join(dirpath, f))
            os.rmdir(dirpath)
            self.rep.rmdir(dirpath)

    @precondition(lambda self: self._files())
    @rule(data=st.data(), mode=st.sampled_from([0o600, 0o640, 0o644, 0o755]))
    def chmod(self, data, mode):
        path = data.draw(st.sampled_from(self._files()))
        os.chmod(self.src / path, mode)
        self.rep.setattr(path, mode=mode)

    # -- faults ---------------------------------------------------------------------
    @rule()
    def cut_link(self):
        self.rep.flush()
        link = self.conn.link
        if link is not None and not link.closed:
            link.fail(OSError("cut by the test"))

    @precondition(lambda self: self.target_up)
    @rule()
    def stop_target(self):
        self.rep.flush()
        self.target.stop()
        self.target_up = False

    @precondition(lambda self: not self.target_up)
    @rule()
    def start_target(self):
        self.target = self.engine.start_target(self.dst, port=self.port)
        self.target_up = True

    @rule()
    def drain(self):
        if not self.target_up:
            self.start_target()
        assert self.rep.drain(60), self.rep.statistics()
        self.check_same()

    def check_same(self):
        theirs = entries(self.dst / "data") if (self.dst / "data").exists() else {}
        ours = entries(self.src)
        assert sorted(theirs) == sorted(ours)
        for rel, e in ours.items():
            t = theirs[rel]
            if e[0] == "file":  # content and mode (times move with every op)
                assert t[:3] == e[:3], rel
            else:
                assert t == e, rel

    @invariant()
    def nothing_dropped(self):
        for row in self.engine.statistics().targets:
            assert row[0][list(self.engine.stats.target("x").numeric).index("OpsDropped")] == 0

    def teardown(self):
        try:
            if not self.target_up:
                self.start_target()
            assert self.rep.drain(60), self.rep.statistics()
            self.check_same()
            assert self.rep.stream.applied == self.rep.pipeline.state.last_seq()
        finally:
            self.engine.close(0)
            shutil.rmtree(self.tmp, ignore_errors=True)


def _case(examples, steps):
    case = type("Case", (ReplicationMachine.TestCase,), {})
    case.settings = settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])
    return case


TestReplicationModel = _case(40, 40)
TestReplicationModelLong = pytest.mark.slow(_case(400, 60))
