import io
import json
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dtcore.cli import dtstat
from dtcore.control.stats import ConState, Statistics
from dtcore.control.statserver import StatsServer
from dtcore.control.stsfile import OLD_NAME, StatsFile, StatsLogger, encode, header, read, to_numpy
from dtcore.errors import InvalidStatisticsFileError

EXPECTED = Path(__file__).resolve().parent / "expected"
T0 = 1789908309.25  # 2026-09-20 12:45:09.250 UTC


@pytest.fixture
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def engine_stats():
    s = Statistics()
    s.server["StartTime"] = int(T0) - 3600
    s.server["Logins"], s.server["SourceState"], s.server["TargetState"] = 1, 2, 1
    s.server.add("RepOpsGenerated", 436845)
    s.server.add("MirOpsGenerated", 3316423)
    s.server.add("MirBytesGenerated", 108352749214952)
    s.server["lastFileTouched"] = "/log/data file"
    s.server["autoReConnects"] = 1
    t = s.target("10.10.1.104", "10.10.1.105")
    t["Ops Received"], t["Mirror Ops Received"] = 25, 23
    c = s.connection(1, "10.10.1.104")
    c["connectTime"] = int(T0) - 3000
    c["conState"] = ConState.SCHEDULED | ConState.ERROR
    c["conOpsTx"], c["conBytesTx"], c["conBytesCompressedTx"] = 27, 14952687269, 14952
    c["conMirrorPercent"] = 10000
    c["conBytesSkipped"] = 22867624
    s.connection(2, "192.168.0.9")["conOpsTx"] = 5
    return s


def test_constate_values_are_the_guides():
    assert [int(ConState.NONE), ConState.ACTIVE, ConState.PAUSED, ConState.SCHEDULED,
            ConState.ERROR] == [0, 1, 2, 4, 8]
    assert ConState.SCHEDULED | ConState.ERROR == 12


def test_file_round_trip_and_numpy(tmp_path):
    stats = engine_stats()
    f = StatsFile(tmp_path / "statistic.sts")
    for i in range(5):
        stats.server.add("RepOpsGenerated", 10)
        f.append(stats.snapshot(now=T0 + i))
    snaps = list(read(tmp_path / "statistic.sts"))
    assert [s.time for s in snaps] == [T0 + i for i in range(5)]
    assert [s.value("server", "RepOpsGenerated") for s in snaps] == [436855 + 10 * i for i in range(5)]
    assert snaps[0].value("connection", "conState") == 12
    assert snaps[0].value("target", "PeerAddress") == "10.10.1.104"
    assert snaps[0].value("connection", "ConCurrentTime") == int(T0)
    arrays = to_numpy(snaps)
    assert arrays["server"].shape == (5,) and arrays["connection"].shape == (10,)
    assert np.all(np.diff(arrays["server"]["RepOpsGenerated"]) == 10)
    assert list(arrays["connection"]["conPeerAddress"][:2]) == ["10.10.1.104", "192.168.0.9"]


@pytest.mark.parametrize("save_old", [True, False])
def test_size_cap_and_save_stat_file(tmp_path, save_old):
    stats = engine_stats()
    cap = len(header()) + 3 * len(encode(stats.snapshot(now=T0)))  # three snapshots a file
    f = StatsFile(tmp_path / "statistic.sts", max_size=cap, save_old=save_old)
    for i in range(7):
        f.append(stats.snapshot(now=T0 + i))
    assert (tmp_path / "statistic.sts").stat().st_size <= cap
    assert [s.time - T0 for s in read(tmp_path / "statistic.sts")] == [6]
    old = tmp_path / OLD_NAME
    assert old.exists() == save_old
    if save_old:
        assert [s.time - T0 for s in read(old)] == [3, 4, 5]


def _file(tmp_path, ends=None):
    f = StatsFile(tmp_path / "statistic.sts")
    stats = engine_stats()
    for i in range(3):
        f.append(stats.snapshot(now=T0 + i))
        if ends is not None:  # where each record ends: a cut there leaves a whole file
            ends.add((tmp_path / "statistic.sts").stat().st_size)
    return (tmp_path / "statistic.sts").read_bytes()


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(0, 10_000))
def test_truncated_file_gives_minus_143_with_an_offset(tmp_path_factory, cut):
    path = tmp_path_factory.mktemp("sts")
    ends: set[int] = {len(header())}  # a header and no records yet is a whole file too
    data = _file(path, ends)
    cut = cut % len(data)
    assume(cut not in ends)
    (path / "cut.sts").write_bytes(data[:cut])
    with pytest.raises(InvalidStatisticsFileError) as e:
        list(read(path / "cut.sts"))
    assert e.value.code == -143 and " at byte " in str(e.value)


def test_foreign_newer_and_damaged_files(tmp_path):
    data = _file(tmp_path)
    for name, blob, words in (
            ("foreign.sts", b"PK\x03\x04" + bytes(100), "not a dtcore statistics file at byte 0"),
            ("newer.sts", data[:8] + struct.pack("<H", 9) + data[10:], "version 9 is newer"),
            ("flipped.sts", data[:-5] + bytes([data[-5] ^ 1]) + data[-4:], "checksum")):
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(InvalidStatisticsFileError, match=words):
            list(read(tmp_path / name))


def test_dtstat_prints_the_guides_layout(tmp_path, utc):
    StatsFile(tmp_path / "s.sts").append(engine_stats().snapshot(now=T0))
    out = io.StringIO()
    assert dtstat.main(["-F", str(tmp_path / "s.sts"), "-IP", "10.10.1.104"], out=out) == 0
    assert out.getvalue() == (EXPECTED / "dtstat_sample.txt").read_text()


def test_dtstat_csv_with_header_and_time_window(tmp_path, utc):
    stats = engine_stats()
    f = StatsFile(tmp_path / "s.sts")
    for i in range(3):
        f.append(stats.snapshot(now=T0 + 60 * i))
    assert dtstat.main(["-p", "-f", str(tmp_path / "s.sts"), "-s", str(tmp_path / "c.csv"),
                        "-st", str(tmp_path / "t.csv"), "-start", "09/20/202612:46"],
                       out=io.StringIO()) == 0
    rows = (tmp_path / "c.csv").read_text().splitlines()
    assert rows[0].startswith("Date/Time,conPeerAddress,connectTime,conState,")
    assert len(rows) == 1 + 2 * 2  # two snapshots from 12:46 on, two connections each
    assert rows[1].startswith("09/20/2026 12:46:09,10.10.1.104,")
    t = (tmp_path / "t.csv").read_text().splitlines()
    assert t[0].startswith("Date/Time,PeerAddress,LocalAddress,Ops Received,") and len(t) == 3


def test_dtstat_reports_a_bad_file_without_a_traceback(tmp_path, capsys):
    (tmp_path / "bad.sts").write_bytes(b"nonsense")
    assert dtstat.main(["-f", str(tmp_path / "bad.sts")]) == 1
    assert "[-143]" in capsys.readouterr().err


def test_live_dtstat_from_the_server_prints_only_changes(tmp_path):
    stats = engine_stats()
    server = StatsServer(stats, port=0).start()
    try:
        out = io.StringIO()
        args = ["-server", "127.0.0.1", str(server.port), "-i", "0.01", "-count", "4",
                "-t", str(tmp_path / "live.sts")]
        assert dtstat.main(args, out=out) == 0
        assert out.getvalue().count("SYSTEMALLOCATOR::") == 1  # nothing changed after the first
        assert len(list(read(tmp_path / "live.sts"))) == 1
    finally:
        server.stop()


def written(path):
    """Snapshots in a file the logger may be appending to: a record caught
    half written counts as not yet there (the check after stop() is strict)."""
    try:
        return len(list(read(path))) if path.exists() else 0
    except InvalidStatisticsFileError:
        return 0


def test_stats_logger_writes_on_its_interval(tmp_path):
    stats = engine_stats()
    logger = StatsLogger(stats, StatsFile(tmp_path / "statistic.sts"), interval=0.02).start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and written(tmp_path / "statistic.sts") < 3:
        time.sleep(0.02)
    logger.stop()
    assert len(list(read(tmp_path / "statistic.sts"))) >= 3


def test_queue_counters_feed_the_connection_in_bulk():
    from dtcore.queues.replication import ReplicationQueue
    stats = Statistics()
    q = ReplicationQueue(memory_bytes=32 << 20)
    stats.feed(4, q.counts)
    q.push([b"x" * 100] * 3, ops=2)
    q.push([b"y" * 10], kind=1)
    snap = stats.snapshot()
    assert snap.value("connection", "conOpsInRepQueue") == 6
    assert snap.value("connection", "conBytesInRepQueue") == 300
    assert (snap.value("connection", "conOpsInMirQueue"), snap.value("connection", "conBytesInMirQueue")) == (1, 10)
    assert snap.value("server", "IQAllocatorTotalBytes") > 0
    q.close()


def test_no_server_is_a_clear_error(capsys):
    assert dtstat.main(["-server", "127.0.0.1", "1", "-count", "1"]) == 1
    assert "no statistics server at 127.0.0.1:1" in capsys.readouterr().err


def test_a_started_over_file_is_never_seen_without_its_header(tmp_path):
    """The file starts over every few records; a reader checking it all the
    while never finds it empty or with half a header."""
    stats = engine_stats()
    snap = stats.snapshot(now=T0)
    path = tmp_path / "statistic.sts"
    f = StatsFile(path, max_size=3 * len(encode(snap)) + len(header()))
    stop, seen, bad = threading.Event(), [], []

    def check():
        while not stop.is_set():
            try:
                seen.append(len(list(read(path))))
            except FileNotFoundError:
                pass
            except InvalidStatisticsFileError as e:
                if "header" in str(e):
                    bad.append(str(e))

    reader = threading.Thread(target=check)
    reader.start()
    try:
        for _ in range(300):
            f.append(snap)
    finally:
        stop.set()
        reader.join(timeout=30)
    assert seen and not reader.is_alive() and not bad, bad[:1]


def _older_file(path, drop):
    """statistic.sts as an engine without the server field ``drop`` writes it."""
    import json
    import zlib

    from dtcore.control import stsfile
    fields = {s: [f for f in fs if f.lstrip("@") != drop] for s, fs in stsfile.CURRENT.sections.items()}
    schema = json.dumps({"sections": fields}).encode()
    head = struct.pack("<8sHHI", stsfile.MAGIC, stsfile.VERSION, 0, len(schema)) + schema
    snap = engine_stats().snapshot(now=T0)
    keep = [i for i, n in enumerate(stsfile.CURRENT.numeric["server"]) if n != drop]
    body = struct.pack("<d", snap.time) + snap.server[keep].astype("<i8").tobytes()
    for name in stsfile.CURRENT.text["server"]:
        b = snap.server_text.get(name, "").encode()
        body += struct.pack("<H", len(b)) + b
    body += struct.pack("<HH", 0, 0)
    path.write_bytes(head + struct.pack("<II", len(body), zlib.crc32(body)) + body)
    return snap


def test_a_file_with_other_fields_reads_back_by_name(tmp_path, utc):
    """An engine with one field fewer: every value keeps its name (none shifts
    into its neighbour's place); the missing one reads as 0; dtstat and
    to_numpy take the file as it is."""
    written = _older_file(tmp_path / "old.sts", "Logins")
    (snap,) = list(read(tmp_path / "old.sts"))
    assert snap.value("server", "Logins") == 0
    for name in ("FailedLogins", "RepOpsGenerated", "MirOpsGenerated", "autoReConnects"):
        assert snap.value("server", name) == written.value("server", name), name
    assert to_numpy([snap])["server"]["MirBytesGenerated"][0] == 108352749214952
    out = io.StringIO()
    assert dtstat.main(["-f", str(tmp_path / "old.sts")], out=out) == 0


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_damaged_files_give_only_minus_143(tmp_path_factory, data):
    """Flipped, cut, inserted or replaced bytes anywhere, schema included:
    reading yields snapshots or raises -143, never another exception."""
    path = tmp_path_factory.mktemp("fuzz") / "f.sts"
    good = bytearray(_file(path.parent))
    how = data.draw(st.sampled_from(["flip", "cut", "insert", "schema"]))
    at = data.draw(st.integers(0, len(good) - 1))
    if how == "flip":
        good[at] ^= data.draw(st.integers(1, 255))
    elif how == "cut":
        del good[at:at + data.draw(st.integers(1, 64))]
    elif how == "insert":
        good[at:at] = data.draw(st.binary(min_size=1, max_size=16))
    else:
        schema = data.draw(st.recursive(
            st.none() | st.integers() | st.text(max_size=5),
            lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
                st.sampled_from(["sections", "server", "target", "connection", ""]), kids,
                max_size=4), max_leaves=20))
        raw = json.dumps(schema).encode() if data.draw(st.booleans()) else b"[" * 5000
        n = struct.unpack_from("<I", good, 12)[0]
        good[12:16] = struct.pack("<I", len(raw))
        good[16:16 + n] = raw
    path.write_bytes(bytes(good))
    try:
        snaps = list(read(path))
    except InvalidStatisticsFileError as e:
        assert e.code == -143
    else:
        to_numpy(snaps)
