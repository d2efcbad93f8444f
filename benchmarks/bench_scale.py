"""asv: difference mirrors and profiles of generated sets by file count and
change ratio (the figures to quote come from ``python -m benchmarks.scale``,
which alternates the tools against rsync; these track the same measures
across commits).  Each setup makes a fresh tree, a ``dtcore target``
process and a full mirror, then changes the given fraction of the files;
``peakmem_`` is the source side (the target runs in its own process, whose
peak ``track_target_peak_mb`` reads).  A million files belongs to the slow
profile: ``DTCORE_BENCH_MILLION=1``."""
from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

from benchmarks.mirror_summary import SECRET, DtTarget
from benchmarks.scale import CLI, change, generate, peak, peak_reset, timed
from dtcore.engine import Engine
from dtcore.model.repset import ReplicationSet

FILES = [10_000, 100_000] + ([1_000_000] if os.environ.get("DTCORE_BENCH_MILLION") else [])


class DifferenceMirror:
    params = (FILES, [0.001, 0.01])
    param_names = ["files", "changed"]
    number, repeat, warmup_time = 1, 1, 0  # each run uses up the changes
    timeout = 1800

    def setup(self, files: int, changed: float) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="dtbench-asv-scale-"))
        self.src = self.work / "src"
        rng = random.Random(files)
        generate(self.src, files, rng)
        (self.work / "dt").mkdir()
        self.env = {**os.environ, "DTCORE_SECRET": SECRET, "DTCORE_LOGDIR": str(self.work / "l")}
        self.target = DtTarget(self.work / "dt")
        self.address = f"127.0.0.1:{self.target.port}:dest"
        timed([*CLI, "mirror", "--full", "-q", str(self.src), self.address], self.env)
        change(self.src, files, changed, rng)
        peak_reset(self.target.proc.pid)

    def teardown(self, files: int, changed: float) -> None:
        self.target.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def time_mirror_command(self, files: int, changed: float) -> None:
        timed([*CLI, "mirror", "-q", str(self.src), self.address], self.env)

    def time_profile_command(self, files: int, changed: float) -> None:
        timed([*CLI, "profile", "-q", str(self.src), self.address], self.env)

    def peakmem_mirror(self, files: int, changed: float) -> None:
        with Engine(secret=SECRET, log=False, statistics=False) as engine:
            repset = ReplicationSet(self.src)
            conn = engine.connect(repset, "127.0.0.1", self.target.port, "dest")
            engine.mirror(conn, repset)

    def peakmem_profile(self, files: int, changed: float) -> None:
        with Engine(secret=SECRET, log=False, statistics=False) as engine:
            repset = ReplicationSet(self.src)
            conn = engine.connect(repset, "127.0.0.1", self.target.port, "dest")
            engine.profile(conn, repset)

    def track_mirror_files_per_second(self, files: int, changed: float) -> float:
        seconds, _ = timed([*CLI, "mirror", "-q", str(self.src), self.address], self.env)
        return files / seconds

    def track_target_peak_mb(self, files: int, changed: float) -> float:
        timed([*CLI, "mirror", "-q", str(self.src), self.address], self.env)
        return peak(self.target.proc.pid) / 1e6

    def track_source_peak_mb(self, files: int, changed: float) -> float:
        return timed([*CLI, "mirror", "-q", str(self.src), self.address], self.env)[1] / 1e6
