"""Profiling a difference mirror: what it would move, why, and where its
time goes, before it runs.

A profile is the real mirror (:class:`Mirror`): the same listing, manifest,
comparison and plan, the same checksum and signature requests (the target
reads and hashes its copies) and the same deltas, with one difference: the
ops it would send are packed into frames and measured (raw, and compressed
by the connection's own compressor) instead of sent, so nothing on the
target changes.  Stage timers run on both sides (the target's through a
``timers`` request), and the link is timed with a probe, so the report can
predict the mirror's wire bytes and time on this link, and how they change
under other settings, from this one pass:

- compression on or off: both frame sizes are measured;
- ``MaxChecksumBlocks``: the checksum requests each block-compared file needs;
- ``SmallFileThreshold``: a file compared by blocks that a higher threshold
  would send whole adds its size minus what it sends (exact); one sent whole
  that a lower threshold would compare by blocks sends at most its size
  (an upper bound, marked so).

The time predicted is the stages before the files (walk, manifest,
comparison: measured), then the per-file work spread over the workers or
the wire bytes at the probed rate, whichever is longer, and the fixed costs:
the target saves its data state twice (synced; at the average of its past
saves, which it reports) and three round trips (the two state requests and
the last acknowledgement)."""
from __future__ import annotations

import contextlib
import cProfile
import os
import pstats
import random
import resource
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from dtcore.control.timers import StageTimers
from dtcore.model.compression import Compressor
from dtcore.model.delta import Delta, Signature
from dtcore.model.manifest import FILE, WHOLE_WALK, Entry
from dtcore.model.ops import Op, OpKind, pack_batch
from dtcore.model.repset import ReplicationSet
from dtcore.protocol.adaptive import ALWAYS, Adaptive
from dtcore.protocol.frames import HEADER_SIZE
from dtcore.protocol.messages import (
    FileReply,
    ManifestRequest,
    SignatureRequest,
    SumsRequest,
    TimersReply,
    TimersRequest,
)
from dtcore.source.connection import Connection
from dtcore.source.mirror.options import (
    ATTRIBUTES,
    BLOCK,
    ROLLING,
    SKIPPED,
    WHOLE,
    MirrorOptions,
)
from dtcore.source.mirror.plan import Rates, plan_file
from dtcore.source.mirror.run import Mirror
from dtcore.source.mirror.send import WINDOW, FrameBatch, Sender

SCHEMA = 1  # of ProfileReport.document(), described by profile.schema.json beside this file
SCHEMA_FILE = os.path.join(os.path.dirname(__file__), "profile.schema.json")
CHOICES = (SKIPPED, ATTRIBUTES, WHOLE, BLOCK, ROLLING)
PROBE_BYTES = 4 << 20
# a profile compares blocks at this grain, so that it knows the bytes at each
# MirrorChunkSize in BLOCK_SIZES (multiples of it) from one pass
FINE_BLOCK = 4096
BLOCK_SIZES = (4096, 16384, 65536, 262144, 1 << 20)
TOP = 10


class Recorder:
    """What the profiled mirror would have sent: payload bytes and time per
    file, frames measured raw and compressed, and the stage timers."""

    def __init__(self, compressor: Compressor | None) -> None:
        self.compressor = compressor
        self.timers = StageTimers()
        self._lock = threading.Lock()
        self.payload: dict[bytes, int] = defaultdict(int)  # op data bytes per path
        self.meta: dict[bytes, int] = defaultdict(int)  # of those, not file content
        self.seconds: dict[bytes, float] = defaultdict(float)
        self.blocks: dict[bytes, int] = {}  # blocks of each file compared by checksums
        # of each file compared by checksums: the bytes it sends at each block size
        self.block_bytes: dict[bytes, dict[int, int]] = {}
        self.files: list[tuple[bytes, str, int]] = []  # path, choice, size
        # with a sample: the plan of each file looked at, and the files not looked at
        self.planned: dict[bytes, str] = {}
        self.unsampled: list[tuple[bytes, str, int]] = []
        # per file looked at: (same size and time, same mode, same size) as its target copy
        self.target_attrs: dict[bytes, tuple[bool, bool, bool]] = {}
        self.frames = self.ops = 0
        self.wire_raw = self.wire_compressed = 0
        self.compress_seconds = 0.0  # lz4's time over every frame

    def data_bytes(self) -> int:
        with self._lock:
            return sum(self.payload.values())

    def op(self, op: Op) -> None:
        with self._lock:
            self.payload[op.path] += len(op.data)
            if op.kind not in (OpKind.WRITE, OpKind.PATCH):
                self.meta[op.path] += len(op.data)

    def frame(self, ops: list[Op]) -> tuple[int, int]:
        """Measure one frame as the transmitter would build it: (data bytes,
        wire bytes with compression)."""
        body = pack_batch(ops)
        raw = compressed = HEADER_SIZE + len(body)
        took = 0.0
        if self.compressor is not None:
            start = time.perf_counter()
            payload = self.compressor.compress(body, ops[0].path if len(ops) < 64 else None)
            took = time.perf_counter() - start
            if payload.compressed:
                compressed = HEADER_SIZE + len(payload.header) + len(payload.body)
        with self._lock:
            self.compress_seconds += took
            self.frames += 1
            self.ops += len(ops)
            self.wire_raw += raw
            self.wire_compressed += compressed
        return sum(len(o.data) for o in ops), compressed


class ProfileBatch(FrameBatch):
    """A batch whose frames are measured, not sent."""

    def __init__(self, conn: Connection, on_done: Callable[[bytes], None],
                 on_sent: Callable[[int, int, int], None], recorder: Recorder) -> None:
        super().__init__(conn, on_done, on_sent)
        self.recorder = recorder

    def add(self, op: Op) -> None:
        super().add(op)
        self.recorder.op(op)

    def flush(self) -> None:
        if self.ops:
            ops = self.ops
            self.ops, self.nbytes, self.data_bytes = [], 0, 0
            data, wire = self.recorder.frame(ops)
            self.on_sent(len(ops), data, wire)
        super().flush()  # with no ops left: ends the claims and marks the files done


class RecordingBatch(FrameBatch):
    """A batch that sends its frames and records them (a mirror's report)."""

    def __init__(self, conn: Connection, on_done: Callable[[bytes], None],
                 on_sent: Callable[[int, int, int], None], recorder: Recorder) -> None:
        super().__init__(conn, on_done, self._sent)
        self.recorder, self._on_sent = recorder, on_sent
        self._raw = 0

    def add(self, op: Op) -> None:
        super().add(op)
        self.recorder.op(op)

    def flush(self) -> None:
        if self.ops:
            self._raw = HEADER_SIZE + len(pack_batch(self.ops))
        super().flush()

    def _sent(self, ops: int, data: int, wire: int) -> None:
        with self.recorder._lock:
            self.recorder.frames += 1
            self.recorder.ops += ops
            self.recorder.wire_raw += self._raw
            self.recorder.wire_compressed += wire
        self._on_sent(ops, data, wire)


class ProfileSender(Sender):
    """The mirror's sender with its reads, hashes and questions timed."""

    def __init__(self, conn: Connection, root: bytes, opts: MirrorOptions, rates: Rates,
                 recorder: Recorder) -> None:
        super().__init__(conn, root, opts, rates)
        self.recorder = recorder

    def read(self, fd: int, n: int, pos: int) -> bytes:
        with self.recorder.timers.timed("source: read what would be sent") as t:
            data = super().read(fd, n, pos)
            t.nbytes = len(data)
        return data

    def target_sums(self, path: bytes, size: int, block: int,
                    per: int) -> Iterator[tuple[int, FileReply, np.ndarray]]:
        it = super().target_sums(path, size, block, per)
        while True:
            with self.recorder.timers.timed("source: wait for the target's checksums") as t:
                item = next(it, None)
                if item is not None:
                    t.nbytes = item[2].nbytes
            if item is None:
                return
            yield item

    def block_differences(self, path: bytes, fd: int, size: int, block: int,
                          per: int = 0) -> Iterator[tuple[int, np.ndarray, int]]:
        """The mirror's block differences, found at FINE_BLOCK grain (as many
        requests, each for more blocks) and folded to ``block``, so that
        the bytes at other block sizes are known too; a mirror that sends
        keeps its own grain."""
        with self.recorder._lock:
            self.recorder.blocks[path] = -(-size // block)
        fine = FINE_BLOCK if self.opts.profile and block % FINE_BLOCK == 0 else block
        r = block // fine
        flags = []
        for first, differs, target_size in super().block_differences(
                path, fd, size, fine, (per or self.opts.max_checksum_blocks) * r):
            flags.append(differs)
            yield first // r, _fold(differs, r), target_size
        found = np.concatenate(flags) if flags else np.zeros(0, bool)
        sizes = {b: changed_bytes(found, fine, b, size) for b in BLOCK_SIZES if b % fine == 0}
        with self.recorder._lock:
            self.recorder.block_bytes[path] = sizes

    def source_sums(self, fd: int, offset: int, length: int, block: int) -> np.ndarray:
        with self.recorder.timers.timed("source: hash blocks", max(length, 0)):
            return super().source_sums(fd, offset, length, block)

    def target_signature(self, path: bytes, block: int) -> tuple[dict[str, Any], memoryview]:
        with self.recorder.timers.timed("source: wait for the target's signature") as t:
            fields, data = super().target_signature(path, block)
            t.nbytes = len(data)
        return fields, data

    def delta(self, sig: Signature, path: bytes) -> Delta:
        with self.recorder.timers.timed("source: build rolling deltas") as t:
            d = super().delta(sig, path)
            t.nbytes = d.source_size
        return d


def _fold(flags: np.ndarray, r: int) -> np.ndarray:
    """Flags of blocks ``r`` times as large: set where any of theirs is."""
    n = -(-len(flags) // r)
    padded = np.zeros(n * r, dtype=bool)
    padded[:len(flags)] = flags
    return np.asarray(padded.reshape(n, r).any(axis=1))


def changed_bytes(flags: np.ndarray, fine: int, block: int, size: int) -> int:
    """The bytes a block comparison at ``block`` sends, from the differing
    ``fine`` blocks of a file of ``size`` bytes."""
    idx = np.flatnonzero(_fold(flags, block // fine)).astype(np.int64)
    return int(np.minimum((idx + 1) * block, size).sum() - (idx * block).sum())


class ProfileMirror(Mirror):
    """A mirror that records instead of sending (see the module docstring);
    with ``send``, a real mirror that records what it sends as well.  With
    ``sample`` N, about N of the files left to look at one by one are looked
    at; of the others, one sent whole counts its size (nothing read), one to
    compare by blocks or delta counts its size for the estimate."""

    def __init__(self, conn: Connection, repset: ReplicationSet, options: MirrorOptions,
                 recorder: Recorder, progress: Callable[[Mirror], None] | None = None,
                 send: bool = False, sample: int = 0, seed: int = 0) -> None:
        options.profile = not send
        super().__init__(conn, repset, options, progress=progress)
        self.recorder = recorder
        self.timers = recorder.timers
        self.sender = ProfileSender(conn, os.fsencode(repset.root), options, self.rates, recorder)
        self.sample = sample
        if sample:  # drawing N of them needs the count of files to look at: list the set whole
            self.part_bytes = WHOLE_WALK
        self._rng = random.Random(seed)

    def _drawn(self) -> bool:
        with self._lock:
            return self._rng.random() * max(1, self.files_to_plan) < self.sample

    def _batch(self) -> FrameBatch:
        kind = ProfileBatch if self.opts.profile else RecordingBatch
        return kind(self.conn, self._mark_done, self._generated, self.recorder)

    def _generated(self, ops: int, nbytes: int, wire: int) -> None:
        if not self.opts.profile:
            super()._generated(ops, nbytes, wire)
            return
        # what would be sent: the result says it, the statistics do not
        with self._lock:
            self.result.bytes_sent += nbytes
            self.result.wire_bytes += wire

    def _file(self, batch: FrameBatch, e: Entry, t: Entry | None, cut_short: bool) -> None:
        if self.sample and e.kind == FILE:
            plan = plan_file(e, t, self.opts, self.rates, cut_short)
            if plan in (WHOLE, BLOCK, ROLLING):
                if not self._drawn():
                    with self.recorder._lock:
                        self.recorder.unsampled.append((e.path, plan, e.size))
                    Mirror._account(self, e, plan)
                    return
                with self.recorder._lock:
                    self.recorder.planned[e.path] = plan
        if t is not None and t.kind == FILE:
            with self.recorder._lock:
                self.recorder.target_attrs[e.path] = (
                    t.size == e.size and t.mtime_ns == e.mtime_ns, t.mode == e.mode,
                    t.size == e.size)
        start = time.perf_counter()
        try:
            super()._file(batch, e, t, cut_short)
        finally:
            with self.recorder._lock:
                self.recorder.seconds[e.path] += time.perf_counter() - start

    def _account(self, entry: Entry, strategy: str, skipped: int = 0, item: str = "") -> None:
        with self.recorder._lock:
            self.recorder.files.append((entry.path, strategy, entry.size))
        super()._account(entry, strategy, skipped, item)


@dataclass
class LinkProbe:
    """The link from source to target as a probe found it."""

    rtt_seconds: float
    bytes_per_second: float


def probe_link(conn: Connection, nbytes: int = PROBE_BYTES, rounds: int = 3) -> LinkProbe:
    """Round trip of an empty timers request, and the rate of ``nbytes`` of
    random data sent with one (the best of ``rounds``)."""
    def once(data: bytes = b"") -> float:
        start = time.perf_counter()
        conn.call(TimersRequest(), data=data)
        return time.perf_counter() - start
    rtt = min(once() for _ in range(rounds))
    payload = os.urandom(nbytes)
    busy = min(once(payload) for _ in range(rounds))
    return LinkProbe(rtt, nbytes / max(busy - rtt, 1e-6))


@dataclass
class ProfileReport:
    """What a difference mirror would do and cost; :meth:`document` is the
    JSON form (``schema`` 1, described in the README)."""

    settings: dict[str, Any]
    files: int
    bytes_total: int
    seconds: float
    choices: dict[str, dict[str, int]]
    data_bytes: int
    wire: dict[str, int]
    stages: list[dict[str, Any]]
    cpu: dict[str, dict[str, float]]
    link: LinkProbe
    predicted: dict[str, Any]
    what_if: dict[str, list[dict[str, Any]]]
    top_bytes: list[dict[str, Any]]
    top_seconds: list[dict[str, Any]]
    changed_fraction: list[dict[str, Any]]
    folders: list[dict[str, Any]]
    orphan_removal: dict[str, int] = field(default_factory=dict)
    # a report of a mirror that ran: its seconds, data and wire bytes (None: a profile)
    ran: dict[str, Any] | None = None
    # a profile followed by the mirror: that mirror's report
    mirror: "ProfileReport | None" = None
    # with cpu_profile: the pstats file and the functions with most time of their own
    python_profile: dict[str, Any] | None = None
    # with a sample: how many files were looked at, and the estimates with their bounds
    sample: dict[str, Any] | None = None

    def document(self) -> dict[str, Any]:
        doc = {k: v for k, v in self.__dict__.items() if k not in ("link", "mirror")}
        doc["link"] = {"rtt_seconds": self.link.rtt_seconds,
                       "bytes_per_second": self.link.bytes_per_second}
        if self.mirror is not None:
            doc["mirror"] = self.mirror.document()
        return {"schema": SCHEMA, **doc}


@contextmanager
def python_profile(path: str, top: int = 15) -> Iterator[dict[str, Any]]:
    """cProfile the calling thread and every thread started meanwhile (the
    mirror's workers), merged into one pstats file at ``path``; the dict it
    yields gets the functions with the most time of their own."""
    profiles = [cProfile.Profile()]

    def start(*_: Any) -> None:  # the first thing each new thread runs
        p = cProfile.Profile()
        profiles.append(p)
        p.enable()
    threading.setprofile(start)
    profiles[0].enable()
    out: dict[str, Any] = {"file": path, "top": []}
    try:
        yield out
    finally:
        profiles[0].disable()
        threading.setprofile(None)  # type: ignore[arg-type]
        stats = pstats.Stats(profiles[0])
        for p in profiles[1:]:
            stats.add(p)  # its thread has ended: nothing more comes in
        stats.dump_stats(path)
        rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]  # type: ignore[attr-defined]
        out["top"] = [{"function": f"{os.path.basename(f)}:{line}({name})", "calls": nc,
                       "own_seconds": tt, "cumulative_seconds": ct}
                      for (f, line, name), (_, nc, tt, ct, _) in rows]


def profile(conn: Connection, repset: ReplicationSet, opts: MirrorOptions, *,
            progress: Callable[[Mirror], None] | None = None,
            probe_bytes: int = PROBE_BYTES, top: int = TOP, send: bool = False,
            run: Callable[[Mirror], Any] = lambda m: m.run(),
            cpu_profile: str | None = None, sample: int = 0, seed: int = 0) -> ProfileReport:
    """Profile a difference mirror of ``repset`` over ``conn`` (see the module
    docstring); nothing on the target changes.  With ``send``, run the mirror
    for real (through ``run``, the engine's reconnecting runner) and report
    what it did, in the same form.  ``cpu_profile``: a file for the Python
    side's profile of the run (:func:`python_profile`).  ``sample``: look
    at about that many of the files needing a look, chosen at random
    (``seed``), and estimate the rest (:class:`ProfileMirror`)."""
    ch = conn.tx.check().ch
    cfg = conn.config
    # the connection's own compressor, or one made as it would be, for the what-if
    recorder = Recorder(ch.compressor or Compressor(cfg["MinCompressionFileSize"],
                                                    cfg["SkipCompressionFileExt"]))
    link = probe_link(conn, probe_bytes)
    before = TimersReply.parse(conn.call(TimersRequest())[0])
    usage, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    m = ProfileMirror(conn, repset, opts, recorder, progress, send=send,
                      sample=0 if send else sample, seed=seed)
    watch: contextlib.AbstractContextManager[dict[str, Any]] = \
        python_profile(cpu_profile) if cpu_profile else contextlib.nullcontext({})
    with watch as python:
        result = run(m)
    wall = time.perf_counter() - start
    after_usage = resource.getrusage(resource.RUSAGE_SELF)
    after = TimersReply.parse(conn.call(TimersRequest())[0])
    cpu_source = (after_usage.ru_utime - usage.ru_utime) + (after_usage.ru_stime - usage.ru_stime)
    stages = [{"side": "source", "stage": name.removeprefix("source: "), "seconds": s,
               "calls": n, "bytes": b} for name, (s, n, b) in recorder.timers.snapshot().items()]
    for name, (s, n, b) in after.stages.items():
        s0, n0, b0 = before.stages.get(name, (0.0, 0, 0))
        if n - n0:
            stages.append({"side": "target", "stage": _TARGET_STAGES.get(name, name),
                           "seconds": s - s0, "calls": n - n0, "bytes": b - b0})
    # would the mirror compress?  With "auto", as protocol.adaptive decides
    # from lz4's measured rate and ratio and the probed link
    policy = Adaptive(ch.policy.mode)
    if recorder.compress_seconds > 0 and recorder.wire_raw:
        policy.compress_rate = recorder.wire_raw / recorder.compress_seconds
        policy.ratio = recorder.wire_compressed / recorder.wire_raw
        policy.link_rate = link.bytes_per_second
    compresses = ch.compressor is not None and (policy.mode == ALWAYS or policy.pays())
    seconds, writes = after.state_writes
    # a mirror saves the target path's data state twice (Mirroring, then OK)
    fixed = 2 * (seconds / writes if writes else 0.0) + 3 * link.rtt_seconds
    mode = "never" if ch.compressor is None else ch.policy.mode
    report = _report(opts, result, recorder, compresses, mode, link, wall, stages, top, fixed, {
        "source": {"cpu_seconds": cpu_source, "busy_cores": cpu_source / wall if wall else 0.0},
        "target": {"cpu_seconds": after.cpu - before.cpu,
                   "busy_cores": (after.cpu - before.cpu) / wall if wall else 0.0}})
    if send:
        report.ran = {"seconds": wall, "data_bytes": result.bytes_sent,
                      "wire_bytes": result.wire_bytes}
    if cpu_profile:
        report.python_profile = python
    return report


_TARGET_STAGES = {ManifestRequest.METHOD: "walk and hash its copy",
                  SumsRequest.METHOD: "checksum blocks",
                  SignatureRequest.METHOD: "rolling signatures"}
# the stages that come before the files, timed as they are in a mirror
_SETUP = ("walk and hash the set", "wait for the target's manifest", "compare the manifests")


def _report(opts: MirrorOptions, result: Any, rec: Recorder, compresses: bool, mode: str,
            link: LinkProbe,
            wall: float, stages: list[dict[str, Any]], top: int, fixed: float,
            cpu: dict[str, dict[str, float]]) -> ProfileReport:
    choices = {c: {"files": 0, "bytes": 0, "would_send": 0} for c in CHOICES}
    choices[SKIPPED]["files"] = result.strategies[SKIPPED]  # the bulk-skipped count here too
    choices[SKIPPED]["bytes"] = result.bytes_skipped
    per_file = []
    for path, choice, size in rec.files:
        sent = rec.payload.get(path, 0)
        if choice != SKIPPED:
            c = choices[choice]
            c["files"] += 1
            c["bytes"] += size
            c["would_send"] += sent
        per_file.append((path, choice, size, sent, rec.seconds.get(path, 0.0)))
    setup = sum(s["seconds"] for s in stages if s["side"] == "source" and s["stage"] in _SETUP)
    work_seconds = sum(t for *_, t in per_file)
    data = result.bytes_sent
    sample = None
    if rec.unsampled or rec.planned:
        sample, more_data, more_seconds = _extrapolate(rec, per_file, choices)
        data += more_data
        work_seconds += more_seconds
    work = work_seconds / max(1, opts.workers)
    # the frames' overhead and compression, as measured, carried over to what was not looked at
    scale = data / result.bytes_sent if result.bytes_sent else 1.0

    def seconds(wire: int) -> float:
        return setup + max(work, wire * scale / link.bytes_per_second) + fixed

    wire = rec.wire_compressed if compresses else rec.wire_raw
    predicted = {"wire_bytes": int(wire * scale), "data_bytes": data, "frames": rec.frames,
                 "ops": rec.ops, "seconds": seconds(wire),
                 "fixed_seconds": fixed,
                 "model": "setup stages + max(per-file work / workers, wire bytes / link rate) "
                          "+ two data-state saves (at the target's past average) + 3 round trips"}
    return ProfileReport(
        settings={"mode": opts.mode, "checksum": opts.checksum, "MirrorChunkSize": opts.block,
                  "SmallFileThreshold": opts.small_file,
                  "MaxChecksumBlocks": opts.max_checksum_blocks,
                  "compression": compresses, "compression_mode": mode,
                  "workers": opts.workers},
        files=result.files, bytes_total=result.bytes_total, seconds=wall, choices=choices,
        data_bytes=result.bytes_sent,
        wire={"compressed": rec.wire_compressed, "uncompressed": rec.wire_raw,
              "frames": rec.frames},
        stages=sorted(stages, key=lambda s: -s["seconds"]), cpu=cpu, link=link,
        predicted=predicted, what_if=_what_if(opts, rec, per_file, link, seconds),
        top_bytes=[_row(f) for f in sorted(per_file, key=lambda f: -f[3])[:top] if f[3]],
        top_seconds=[_row(f) for f in sorted(per_file, key=lambda f: -f[4])[:top]],
        changed_fraction=_histogram(per_file), folders=_folders(per_file, top),
        orphan_removal=dict(result.orphans), sample=sample)


Z95 = 1.96  # two-sided 95 % normal quantile


def _ratio_estimate(pairs: list[tuple[int, float]], total_x: int) -> tuple[float, float]:
    """The ratio estimator of sum(y) over a population whose x sums to
    ``total_x``, from sampled (x, y) pairs, and its standard error (no
    finite-population correction: the bound is on the safe side)."""
    n = len(pairs)
    sx = sum(x for x, _ in pairs)
    if not n or not sx:
        return 0.0, float(total_x)  # nothing to go on: anything up to every byte
    r = sum(y for _, y in pairs) / sx
    if n < 2:
        return r * total_x, r * total_x
    resid = sum((y - r * x) ** 2 for x, y in pairs) / (n - 1)
    mean_x = sx / n
    return r * total_x, total_x * (resid / n) ** 0.5 / mean_x


def _extrapolate(rec: Recorder, per_file: list[tuple[bytes, str, int, int, float]],
                 choices: dict[str, dict[str, int]]) -> tuple[dict[str, Any], int, float]:
    """Carry the sampled files over to the others: a file sent whole sends
    its size (and the attributes the sampled ones sent); the bytes of a
    file compared by blocks or a delta, and every file's time, come from
    ratio estimates over the sampled files of its plan (bytes per byte of
    size), with a 95 % bound per plan; the total's bounds are the sums of
    those (on the safe side).  Adds the estimates to ``choices``."""
    looked = {path: f for f in per_file if (path := f[0]) in rec.planned}
    meta = [rec.meta.get(p, 0) for p in looked]
    per_meta = sum(meta) / len(meta) if meta else 0.0
    data, seconds, low, high = 0.0, 0.0, 0.0, 0.0
    groups: dict[str, Any] = {}
    for plan in (WHOLE, BLOCK, ROLLING):
        rest = [(size, p) for p, chosen, size in rec.unsampled if chosen == plan]
        sampled = [f for f in looked.values() if rec.planned[f[0]] == plan]
        total_x = sum(size for size, _ in rest)
        if plan == WHOLE:
            est, se = total_x + per_meta * len(rest), 0.0
        else:
            est, se = _ratio_estimate([(f[2], f[3]) for f in sampled], total_x)
        t_est, _ = _ratio_estimate([(f[2], f[4]) for f in sampled], total_x)
        data += est
        seconds += t_est
        c = choices[plan]
        c["files"] += len(rest)
        c["bytes"] += total_x
        c["would_send"] += int(est)
        groups[plan] = {"looked_at": len(sampled), "not_looked_at": len(rest),
                        "would_send": int(est), "low": int(max(0.0, est - Z95 * se)),
                        "high": int(min(float(total_x + per_meta * len(rest)), est + Z95 * se))}
        low += groups[plan]["low"]
        high += groups[plan]["high"]
    doc = {"looked_at": len(looked), "not_looked_at": len(rec.unsampled), "confidence": 0.95,
           "would_send": {"estimate": int(data), "low": int(low), "high": int(high)},
           "by_plan": groups}
    return doc, int(data), seconds


def _row(f: tuple[bytes, str, int, int, float]) -> dict[str, Any]:
    path, choice, size, sent, secs = f
    return {"path": os.fsdecode(path), "choice": choice, "size": size, "would_send": sent,
            "seconds": secs}


def _what_if(opts: MirrorOptions, rec: Recorder, per_file: list[tuple[bytes, str, int, int, float]],
             link: LinkProbe, seconds: Callable[[int], float]) -> dict[str, list[dict[str, Any]]]:
    """Other settings, computed from this pass (see the module docstring)."""
    out: dict[str, list[dict[str, Any]]] = {"compression": [
        {"value": True, "wire_bytes": rec.wire_compressed, "seconds": seconds(rec.wire_compressed),
         "exact": True},
        {"value": False, "wire_bytes": rec.wire_raw, "seconds": seconds(rec.wire_raw),
         "exact": True}]}
    blocks = list(rec.blocks.values())
    out["MaxChecksumBlocks"] = []
    for per in sorted({8, 16, 32, 64, 128, opts.max_checksum_blocks}):
        requests = sum(-(-max(b, 1) // per) for b in blocks)
        out["MaxChecksumBlocks"].append({
            "value": per, "checksum_requests": requests,
            # requests go WINDOW at a time: the round trips they cost
            "round_trip_seconds": requests / WINDOW * link.rtt_seconds, "exact": True})
    out["ChecksumAll"] = _checksum_what_if(opts, rec, per_file, seconds)
    out["MirrorChunkSize"] = _block_what_if(opts, rec, per_file, seconds)
    out["SmallFileThreshold"] = []
    data_total = rec.data_bytes()
    # folders' ops belong to no file and do not change with the threshold
    other = data_total - sum(f[3] for f in per_file)
    for threshold in sorted({4096, 16384, 65536, 262144, 1 << 20, 4 << 20, 16 << 20,
                             opts.small_file}):
        data, exact = other, True
        for path, choice, size, sent, _ in per_file:
            if choice in (BLOCK, ROLLING) and size < threshold:
                data += size + rec.meta.get(path, 0)  # sent whole instead
            else:
                data += sent
                if choice == WHOLE and opts.small_file > size >= threshold:
                    exact = False  # compared by blocks instead: at most what whole sends
        out["SmallFileThreshold"].append({
            "value": threshold, "data_bytes": data,
            "wire_bytes": int(data * rec.wire_compressed / data_total) if data_total else
            rec.wire_compressed, "exact": exact})
    return out


def _block_what_if(opts: MirrorOptions, rec: Recorder,
                   per_file: list[tuple[bytes, str, int, int, float]],
                   seconds: Callable[[int], float]) -> list[dict[str, Any]]:
    """MirrorChunkSize: each file compared by blocks sends the changed blocks
    of the other size (known at FINE_BLOCK grain).  Exact unless a rolling
    delta or a size change is in the set: a delta was built for this block
    size only, and a size change can move a file between block comparison
    and a delta."""
    if not rec.block_bytes:
        return []
    inexact = any(f[1] == ROLLING for f in per_file) or any(
        not rec.target_attrs.get(path, (True, True, True))[2] for path in rec.block_bytes)
    base = rec.data_bytes()
    ratio = rec.wire_compressed / base if base else 1.0
    rows = []
    sizes = sorted({b for v in rec.block_bytes.values() for b in v} | {opts.block})
    for b in sizes:
        data = base
        for path, by_size in rec.block_bytes.items():
            if b in by_size and opts.block in by_size:
                data += by_size[b] - by_size[opts.block]
        wire = int(data * ratio)
        rows.append({"value": b, "data_bytes": data, "wire_bytes": wire,
                     "seconds": seconds(wire), "exact": b == opts.block or not inexact})
    return rows


def _checksum_what_if(opts: MirrorOptions, rec: Recorder,
                      per_file: list[tuple[bytes, str, int, int, float]],
                      seconds: Callable[[int], float]) -> list[dict[str, Any]]:
    """ChecksumAll the other way.  From a pass with checksums, exact bytes:
    without them a file whose size and time match its copy is skipped
    unread (its attributes sent if only the mode differs), and a small one
    whose content matched but whose time did not is sent whole.  The time
    leaves out the skipped files' work (the manifests' hashing stays in, so
    it errs high).  A pass without checksums cannot see inside what it
    skipped: the other way is not computed."""
    here = {"value": opts.checksum, "data_bytes": rec.data_bytes(), "exact": True}
    if not opts.checksum:
        return [here, {"value": True, "exact": False,
                       "note": "profile with checksums to see what they would find"}]
    data = rec.data_bytes() - sum(f[3] for f in per_file)  # the folders' ops
    work = 0.0
    for path, choice, size, sent, secs in per_file:
        attrs = rec.target_attrs.get(path)
        if attrs is not None and attrs[0]:
            data += 0 if attrs[1] else rec.meta.get(path, 0)
            continue
        work += secs
        if attrs is not None and size < opts.small_file and choice in (ATTRIBUTES, SKIPPED):
            data += size + rec.meta.get(path, 0)  # matched by hash; now sent whole
        else:
            data += sent
    total_work = sum(f[4] for f in per_file)
    ratio = rec.wire_compressed / rec.data_bytes() if rec.data_bytes() else 1.0
    wire = int(data * ratio)
    return [here, {"value": False, "data_bytes": data, "wire_bytes": wire,
                   "seconds": max(0.0, seconds(wire) - (total_work - work) / max(1, opts.workers)),
                   "exact": True}]


def _histogram(per_file: list[tuple[bytes, str, int, int, float]]) -> list[dict[str, Any]]:
    """Files compared by blocks or by a rolling delta, by the fraction of
    their bytes that changed, in tenths."""
    bins = [0] * 10
    for _, choice, size, sent, _ in per_file:
        if choice in (BLOCK, ROLLING) and size:
            bins[min(9, int(10 * min(sent, size) / size))] += 1
    return [{"from": i / 10, "to": (i + 1) / 10, "files": n} for i, n in enumerate(bins)]


def _folders(per_file: list[tuple[bytes, str, int, int, float]], top: int) -> list[dict[str, Any]]:
    """The folders holding most of the bytes to send (their own files)."""
    sent: dict[bytes, list[int]] = defaultdict(lambda: [0, 0])
    for path, choice, _, n, _ in per_file:
        if choice != SKIPPED and n:
            folder = os.path.dirname(path) or b"."
            sent[folder][0] += n
            sent[folder][1] += 1
    most = sorted(sent.items(), key=lambda kv: -kv[1][0])[:top]
    return [{"folder": os.fsdecode(f), "would_send": v[0], "files": v[1]} for f, v in most]
