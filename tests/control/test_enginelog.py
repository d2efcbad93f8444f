import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dtcore.cli.logviewer import Filter, id_set, lines, main
from dtcore.control import events
from dtcore.control.enginelog import (
    ALERT,
    RELEASE,
    EngineLog,
    files_in_order,
    format_line,
    log_name,
    parse,
    series_after,
)
from threads import run_threads

HERE = Path(__file__).resolve().parent
EXPECTED = HERE / "expected"
# 2026-11-24 13:05:09.250 local time, so the expected files hold no zone
WHEN = time.mktime((2026, 11, 24, 13, 5, 9, 0, 0, -1)) + 0.25


def entries(directory):
    return [parse(raw) for p in files_in_order(Path(directory)) for raw in p.read_text().splitlines()]


def test_line_has_the_eight_columns():
    line = format_line(WHEN, 41, 42, 7, ALERT, 4070, "two\nlines\tand a tab")
    assert line == "11/24/2026\t13:05:09.250\t41\t42\t7\t1\t4070\ttwo\\nlines\\tand a tab\n"
    assert parse(line).fields[7] == "two\\nlines\\tand a tab"


def test_rolls_at_max_size_and_keeps_max_files(tmp_path):
    log = EngineLog(tmp_path, max_size=300, max_files=3)
    for i in range(40):
        log.write(f"message {i:02d} " + "y" * 50)
    names = sorted(p.name for p in tmp_path.glob("*.dtl"))
    assert len(names) == 3 and all(p.stat().st_size <= 300 for p in tmp_path.glob("*.dtl"))
    got = entries(tmp_path)
    assert [l.seq for l in got] == list(range(got[0].seq, 41))  # newest kept, in order
    assert got[-1].fields[7].startswith("message 39")
    log.close()


def test_file_numbers_wrap_from_999_to_1(tmp_path):
    log = EngineLog(tmp_path, max_size=250, max_files=4)  # two lines a file
    log.write("first " + "z" * 60)
    (tmp_path / log_name(1)).rename(tmp_path / log_name(998))
    os.pwrite(os.open(tmp_path / "dtlog.lck", os.O_RDWR), (998).to_bytes(4, "little"), 4)
    for i in range(9):  # one more in 998, then two each in 999, 1, 2 and 3
        log.write(f"after {i} " + "z" * 60)
    names = {p.name for p in tmp_path.glob("*.dtl")}
    assert names == {"dtlog999.dtl", "dtlog1.dtl", "dtlog2.dtl", "dtlog3.dtl"}
    assert [p.name for p in files_in_order(tmp_path)] == ["dtlog999.dtl", "dtlog1.dtl", "dtlog2.dtl",
                                                          "dtlog3.dtl"]
    assert series_after(999) == 1 and series_after(5, 998) == 4
    log.close()


def test_message_level_filters_what_is_written(tmp_path):
    for level, want in ((0, []), (1, ["alert"]), (2, ["alert", "release"]),
                        (3, ["alert", "release", "debug"])):
        d = tmp_path / str(level)
        with EngineLog(d, level=level) as log:
            log.write("alert", kind=ALERT)
            log.write("release", kind=RELEASE)
            log.write("debug", debug=True)
        assert [l.fields[7] for l in entries(d)] == want


def test_events_reach_the_log_with_their_id_and_type(tmp_path):
    with EngineLog(tmp_path).attach():
        events.emit(4072, threshold=50, conn="61% used")
        events.emit(4000)
    events.emit(4001)  # detached: not logged
    got = entries(tmp_path)
    assert [(l.id, l.type) for l in got] == [(4072, 1), (4000, 2)]
    assert "QueueSizeAlertThreshold of 50%" in got[0].fields[7]


def test_threads_never_interleave_or_lose_lines(tmp_path):
    log = EngineLog(tmp_path, max_size=4096, max_files=999)
    run_threads(lambda t: [log.write(f"t{t} {i} " + "w" * 30) for i in range(300)], 4)
    got = entries(tmp_path)
    assert all(l.fields for l in got) and len(got) == 1200
    assert sorted(l.seq for l in got) == list(range(1, 1201))
    log.close()


def test_two_processes_share_one_folder(tmp_path):
    child = [sys.executable, str(HERE / "log_child.py"), str(tmp_path)]
    procs = [subprocess.Popen(child + [tag, "500", "2048"]) for tag in ("A", "B")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    got = entries(tmp_path)
    assert all(l.fields for l in got)
    assert [l.seq for l in got] == list(range(1, 1001))  # unique and in file order
    for tag in "AB":
        mine = [l.fields[7].split()[2] for l in got if l.fields[7].startswith(tag)]
        assert mine == [str(i) for i in range(500)]
    assert len({l.fields[2] for l in got}) == 2


# ---- logviewer ----

def _sample(tmp_path):
    log = EngineLog(tmp_path, max_size=1 << 20, clock=lambda: WHEN)
    log.write("engine started", 4000, RELEASE)
    log.write("queue over threshold", 4072, ALERT)
    log.write("no id here")
    log.write("mirror started", 4019, RELEASE)
    log.write("write retried", 4110, ALERT)
    log.close()
    with open(tmp_path / log_name(1), "a") as f:
        f.write("this line is not in the log format\n")
    # pid and tid vary by run: pin them so the output can be compared
    text = (tmp_path / log_name(1)).read_text().splitlines()
    fixed = []
    for raw in text:
        parts = raw.split("\t")
        if len(parts) == 8:
            parts[2], parts[3] = "1234", "5678"
        fixed.append("\t".join(parts))
    (tmp_path / log_name(1)).write_text("\n".join(fixed) + "\n")


@pytest.mark.parametrize("args,expected", [
    ([], "logviewer_all.txt"),
    (["-TYPE", "1"], "logviewer_type1.txt"),
    (["-include", "4000,4100-4200", "-nodate", "-NOTIME", "-nopid", "-notid"], "logviewer_include.txt"),
    (["-exclude", "0,4000-4019", "-noseq", "-notype", "-noid"], "logviewer_exclude.txt"),
])
def test_logviewer_output_matches_hand_written_files(tmp_path, args, expected):
    _sample(tmp_path)
    out = io.StringIO()
    assert main(["-path", str(tmp_path), "-nofollow", *args], out=out) == 0
    assert out.getvalue() == (EXPECTED / expected).read_text()


def test_id_lists_and_ranges():
    inside = id_set("200,400-500,10000-15000")
    assert [i for i in (199, 200, 201, 400, 450, 500, 501, 12000) if inside(i)] == [200, 400, 450, 500, 12000]
    with pytest.raises(Exception):
        id_set("4x")


def test_follow_picks_up_new_lines_across_a_roll(tmp_path):
    log = EngineLog(tmp_path, max_size=400, max_files=50)
    log.write("before following")
    seen, stop = [], threading.Event()

    def follow():
        for line in lines(tmp_path, follow=True, poll=0.01, stop=stop.is_set):
            seen.append(line)
    t = threading.Thread(target=follow)
    t.start()
    for i in range(30):
        log.write(f"live {i} " + "v" * 40)
    deadline = time.monotonic() + 10
    while len(seen) < 31 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    t.join(5)
    assert len(list(tmp_path.glob("*.dtl"))) > 3
    assert [l.fields[7].split()[1] for l in seen[1:]] == [str(i) for i in range(30)]
    log.close()


def test_filter_shows_unparseable_lines_whatever_the_filter():
    f = Filter(type=1, include=id_set("5"))
    assert f.render(parse("garbage")) == "garbage"
    assert f.render(parse("11/24/2026\t13:05:09.250\t1\t2\t3\t2\t5\tinfo")) is None
