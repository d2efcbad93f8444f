"""Profiles of difference mirrors on generated sets, checked against the real
mirror run right after: the choices and the data bytes exactly, the wire
bytes within frame-grouping noise, the time within a stated factor; the
target untouched by the profile; the document valid against its schema; and
the command as people run it."""
from __future__ import annotations

import json
import os
import time

import jsonschema
import pytest

from dtcore.protocol.messages import TimersReply, TimersRequest
from dtcore.source.mirror import profile as profile_module

pytestmark = pytest.mark.timeout(180)
SECRET = "profile-test-secret"
# a profile predicts a mirror's time to within this factor (either way)
TIME_FACTOR = 5
# large enough that hashing, not a synced state save, sets the mirror's time
TABLE = 8 << 20


def _state_saves(conn):
    """Seconds the target has spent saving data states, all told."""
    return TimersReply.parse(conn.call(TimersRequest())[0]).state_writes[0]


def _changed_set(src, engine, repset, conn):
    """A set mirrored once, then a day of change: a block rewritten, an
    append (data shifted, so a rolling delta), new files, a mode change,
    an orphan on the target."""
    rng = os.urandom
    (src / "db").mkdir(parents=True)
    (src / "docs").mkdir()
    for i in range(8):
        (src / "db" / f"table{i}").write_bytes(rng(TABLE))
    for i in range(200):
        (src / "docs" / f"note{i}.txt").write_bytes(b"plain text, compresses well\n" * (i + 10))
    engine.mirror(conn, repset, "full")
    with open(src / "db" / "table0", "r+b") as f:
        f.seek(1 << 20)
        f.write(rng(10_000))
    with open(src / "db" / "table1", "ab") as f:
        f.write(rng(33_333))
    for i in range(20):
        (src / "docs" / f"new{i}.txt").write_bytes(b"new words " * 500)
    os.chmod(src / "docs" / "note3.txt", 0o600)
    os.utime(src / "db" / "table5", (1_000_000, 1_000_000))  # same bytes, other time


def _tree(root):
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = open(p, "rb").read() if os.path.isfile(p) else b""
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_mtime_ns, data)
    return out


def test_a_profile_predicts_the_mirror_that_follows_and_changes_nothing(pair):
    engine, repset, conn, src, dst, target = pair
    # lz4 on every frame it shrinks: with "auto" each frame's choice follows
    # timings, and the wire bytes could not be compared exactly
    conn.close()
    conn = engine.connect(repset, port=target.port, target_path="data", compression="always")
    _changed_set(src, engine, repset, conn)
    (dst / "orphan.tmp").write_bytes(b"only on the target")
    before, stats = _tree(dst), engine.statistics().value("server", "MirOpsGenerated")
    report = engine.profile(conn, repset, checksum=True, orphans=True)
    assert _tree(dst) == before  # the target is as it was
    assert engine.statistics().value("server", "MirOpsGenerated") == stats
    doc = report.document()
    with open(profile_module.SCHEMA_FILE) as f:
        jsonschema.validate(doc, json.load(f))
    assert json.loads(json.dumps(doc)) == doc  # plain JSON, nothing lost

    saves_before = _state_saves(conn)
    start = time.perf_counter()
    result = engine.mirror(conn, repset, checksum=True, orphans=True)
    took = time.perf_counter() - start
    # a synced save can take anything from 1 ms to a second on a busy disk:
    # the model's estimate of the saves and the saves themselves are taken
    # out of both sides, and what is compared is the rest of the model
    took -= _state_saves(conn) - saves_before
    assert {c: v["files"] for c, v in doc["choices"].items()} == result.strategies
    assert doc["data_bytes"] == result.bytes_sent  # exact for the settings used
    assert abs(doc["predicted"]["wire_bytes"] - result.wire_bytes) <= 0.02 * result.wire_bytes
    assert doc["orphan_removal"]["files"] == result.orphans["files"] == 1
    predicted = doc["predicted"]["seconds"] - doc["predicted"]["fixed_seconds"]
    assert 1 / TIME_FACTOR <= predicted / took <= TIME_FACTOR, (predicted, took)
    # what it says about the files
    assert doc["choices"]["block"]["files"] == 1 and doc["choices"]["rolling"]["files"] == 1
    assert doc["choices"]["attributes"]["files"] == 2  # the mode change, the time change
    top = doc["top_bytes"][0]
    assert top["path"] in ("db/table0", "db/table1") and top["would_send"] < 200_000
    assert sum(h["files"] for h in doc["changed_fraction"]) == 2
    assert doc["changed_fraction"][0]["files"] == 2  # each changed by under a tenth
    assert {f["folder"] for f in doc["folders"]} == {"db", "docs"}
    sides = {(s["side"], s["stage"]) for s in doc["stages"]}
    assert ("target", "checksum blocks") in sides and ("target", "rolling signatures") in sides
    assert ("source", "build rolling deltas") in sides and ("source", "hash blocks") in sides
    assert doc["cpu"]["source"]["cpu_seconds"] > 0 and doc["cpu"]["target"]["cpu_seconds"] > 0
    # other settings from the same pass: compression shrinks the text files' frames
    on, off = doc["what_if"]["compression"]
    assert on["wire_bytes"] < off["wire_bytes"] == doc["wire"]["uncompressed"]
    requests = {r["value"]: r["checksum_requests"] for r in doc["what_if"]["MaxChecksumBlocks"]}
    assert requests[8] > requests[32] >= requests[128] > 0
    # and the same changes mirrored again without checksums send what it said
    _undo_and_redo(src, dst)
    again = engine.profile(conn, repset, checksum=True).document()
    off = next(r for r in again["what_if"]["ChecksumAll"] if r["value"] is False)
    assert off["exact"] and off["data_bytes"] != again["data_bytes"]
    assert engine.mirror(conn, repset, checksum=False).bytes_sent == off["data_bytes"]


def _undo_and_redo(src, dst):
    """Make the target differ from the source again the way the day of
    change did: the changed tables' old bytes back, a note that differs in
    time only, one whose content differs with its size and time the same."""
    with open(dst / "db" / "table0", "r+b") as f:
        f.seek(1 << 20)
        f.write(b"\0" * 10_000)
    note, twin = dst / "docs" / "note7.txt", dst / "docs" / "note8.txt"
    os.utime(note, (2_000_000, 2_000_000))  # same bytes, other time: whole without checksums
    st = os.stat(twin)
    data = bytearray(twin.read_bytes())
    data[0] ^= 1  # other bytes, same size and time: only checksums see it
    twin.write_bytes(bytes(data))
    os.utime(twin, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_higher_small_file_threshold_is_predicted_exactly(pair):
    engine, repset, conn, src, dst, _ = pair
    _changed_set(src, engine, repset, conn)
    doc = engine.profile(conn, repset, checksum=True).document()
    rows = {r["value"]: r for r in doc["what_if"]["SmallFileThreshold"]}
    assert rows[4 << 20]["exact"] and rows[4 << 20]["data_bytes"] == doc["data_bytes"]
    above = rows[16 << 20]
    assert above["exact"] and above["data_bytes"] > 2 * TABLE  # both changed tables whole
    # the real mirror with that threshold sends the two changed tables whole
    result = engine.mirror(conn, repset, checksum=True, small_file=16 << 20)
    assert result.bytes_sent == above["data_bytes"]
    assert result.strategies["block"] == result.strategies["rolling"] == 0


def test_a_sampled_profile_bounds_what_the_mirror_then_sends(pair):
    import random
    engine, repset, conn, src, dst, _ = pair
    (src / "d").mkdir()
    pick = random.Random(7)
    for i in range(240):
        (src / "d" / f"f{i:03}").write_bytes(os.urandom(256 << 10))
    engine.mirror(conn, repset, "full")
    for i in range(240):  # one to three of each file's four 64 KiB blocks change
        with open(src / "d" / f"f{i:03}", "r+b") as f:
            for block in pick.sample(range(4), pick.choice((1, 1, 2, 3))):
                f.seek(block * (64 << 10))
                f.write(os.urandom(100))
    doc = engine.profile(conn, repset, checksum=True, sample=60).document()
    with open(profile_module.SCHEMA_FILE) as f:
        jsonschema.validate(doc, json.load(f))
    s = doc["sample"]
    assert 30 <= s["looked_at"] <= 100 and s["looked_at"] + s["not_looked_at"] == 240
    result = engine.mirror(conn, repset, checksum=True)
    looked = doc["data_bytes"]  # measured: what the sampled files (and folders) would send
    low, high = looked + s["would_send"]["low"], looked + s["would_send"]["high"]
    assert low <= result.bytes_sent <= high, (low, result.bytes_sent, high)
    predicted = doc["predicted"]["data_bytes"]
    assert predicted == looked + s["would_send"]["estimate"]
    assert abs(predicted - result.bytes_sent) < 0.1 * result.bytes_sent
    assert doc["choices"]["block"]["files"] == result.strategies["block"] == 240


@pytest.mark.parametrize("other", [16384, 262144])
def test_other_block_sizes_are_predicted_exactly_from_one_pass(pair, other):
    engine, repset, conn, src, dst, _ = pair
    (src / "d").mkdir()
    for i in range(6):
        (src / "d" / f"f{i}").write_bytes(os.urandom(3 << 20))
    engine.mirror(conn, repset, "full")
    for i in range(6):  # scattered small changes, sizes kept: block comparison only
        with open(src / "d" / f"f{i}", "r+b") as f:
            for at in (5000 * i + 100, 1 << 20, (2 << 20) + 70_000 * i):
                f.seek(at)
                f.write(os.urandom(300))
    doc = engine.profile(conn, repset, checksum=True).document()
    rows = {r["value"]: r for r in doc["what_if"]["MirrorChunkSize"]}
    assert rows[65536]["data_bytes"] == doc["data_bytes"] and rows[other]["exact"]
    assert rows[4096]["data_bytes"] < rows[65536]["data_bytes"] < rows[1 << 20]["data_bytes"]
    result = engine.mirror(conn, repset, checksum=True, block=other)
    assert result.bytes_sent == rows[other]["data_bytes"]
