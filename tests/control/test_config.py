import re
from pathlib import Path

import pytest

from dtcore.cli import main as cli
from dtcore.control import settings
from dtcore.control.config import Config
from dtcore.errors import InvalidParameterError, InvalidParameterTypeError


def test_table_holds_every_linux_setting_of_the_guide(guide_lines):
    text = guide_lines
    start = next(i for i, l in enumerate(text) if l.startswith("## Linux server and job settings"))
    end = next(i for i, l in enumerate(text) if i > start and "Chapter 13 Ports" in l)
    names = {m.group(1) for l in text[start:end]
             for m in [re.match(r"^#+\s*\**([A-Za-z0-9_]+)\**\s*$", l.strip())] if m}
    assert names - set(settings.SETTINGS) == set()
    # beyond the Linux list: only the Windows settings dtcore also honours
    assert set(settings.SETTINGS) - names == set(settings.WINDOWS_HONOURED)


@pytest.mark.parametrize("name,default", [("NetPort", 1500), ("StatsPort", 1506), ("QMemoryBufferMax", 256),
                                          ("MaxLogFileSize", 5242880), ("MaxNumberofLogFiles", 20),
                                          ("LogMessageLevel", 2), ("QJournalSpaceMax", None),
                                          ("VerifyLogName", "DTVerify.log"), ("TCPBufferSize", 375000)])
def test_defaults_are_the_guides(name, default):
    assert Config(env={})[name] == default


def test_file_then_environment_then_arguments(tmp_path, seen_events):
    conf = tmp_path / "DT.conf"
    conf.write_text("# comment\n\n  NetPort = 1600 \nqmemorybuffermax=512\nQJournalSpaceMax=Unlimited\n")
    c = Config(conf, env={"DTCORE_NETPORT": "1700", "DTCORE_CONF": "x", "HOME": "/"}, StatsPort=2000)
    assert (c["NetPort"], c.origin("NetPort")) == (1700, "environment")
    assert (c["QMemoryBufferMax"], c.origin("QMemoryBufferMax")) == (512, "file")
    assert (c["StatsPort"], c.origin("StatsPort")) == (2000, "argument")
    assert c["QJournalSpaceMax"] is None and c["LogDir"] == "/var/log/DT"
    assert seen_events == []


def test_unknown_names_and_malformed_lines_are_reported_not_fatal(tmp_path, seen_events):
    conf = tmp_path / "DT.conf"
    conf.write_text("NoSuchSetting=3\njust words\n=5\nNetPort=1501\n")
    c = Config(conf, env={"DTCORE_ALSO_UNKNOWN": "1"})
    assert c["NetPort"] == 1501
    assert [e.id for e in seen_events] == [4096] * 4
    assert "NoSuchSetting" in seen_events[0].message and "DT.conf:1" in seen_events[0].message
    assert "DT.conf:2" in seen_events[1].message and "DT.conf:3" in seen_events[2].message
    assert "DTCORE_ALSO_UNKNOWN" in seen_events[3].message


@pytest.mark.parametrize("line,error,words", [
    ("NetPort=80", InvalidParameterError, ["NetPort=80", "1025..65535"]),
    ("NetPort=abc", InvalidParameterTypeError, ["NetPort='abc'", "1025..65535"]),
    ("LogMessageLevel=7", InvalidParameterError, ["LogMessageLevel=7", "0 or 1 or 2 or 3"]),
    ("TCPBufferSize=100", InvalidParameterError, ["0 or 4096..7500000"]),
])
def test_bad_values_raise_minus_101_naming_key_value_and_what_is_allowed(tmp_path, line, error, words):
    conf = tmp_path / "DT.conf"
    conf.write_text(f"# x\n{line}\n")
    with pytest.raises(error) as e:
        Config(conf, env={})
    assert e.value.code == -101 and "DT.conf:2" in str(e.value)
    assert all(w in str(e.value) for w in words)


def test_ignored_settings_accept_anything_and_zero_tcp_buffer_is_allowed():
    c = Config(env={}, TGThreadCount="whatever", TCPBufferSize=0)
    assert c["TGThreadCount"] == "whatever" and c["TCPBufferSize"] == 0


def test_runtime_set_says_when_a_restart_is_needed(seen_events):
    c = Config(env={})
    assert c.set("QMemoryBufferMax", "1024") is True
    assert c.pending_restart == {"QMemoryBufferMax"} and seen_events[-1].id == 6001
    assert c.set("MirrorChunkSize", 4096) is False
    with pytest.raises(InvalidParameterError):
        c.set("NoSuchThing", 1)


def test_save_keeps_comments_and_unknown_lines(tmp_path):
    conf = tmp_path / "DT.conf"
    conf.write_text("# keep me\nNetPort=1600\nOddLine\nNetPort=1601\n")
    c = Config(conf, env={})
    assert c["NetPort"] == 1601
    c.set("LogMessageLevel", 3)
    c.save()
    assert conf.read_text() == "# keep me\nNetPort=1601\nOddLine\nLogMessageLevel=3\n"
    assert Config(conf, env={})["LogMessageLevel"] == 3


def test_command_line_show_get_set(tmp_path, capsys, monkeypatch):
    conf = tmp_path / "DT.conf"
    monkeypatch.setenv("DTCORE_CONF", str(conf))
    assert cli.main(["config", "set", "netport", "1700"]) == 0
    out = capsys.readouterr().out
    assert "NetPort=1700 written" in out and "after a restart" in out
    assert conf.read_text() == "NetPort=1700\n"
    assert cli.main(["config", "get", "NetPort"]) == 0
    assert capsys.readouterr().out == "1700\n"
    assert cli.main(["config", "set", "NetPort", "99"]) == 2  # usage: a value out of range
    assert "1025..65535" in capsys.readouterr().err
    assert cli.main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^NetPort\s+1700\s+\[file\]\s+engine, restart\s+1025\.\.65535 port$",
                     out, re.M)
    assert re.search(r"^UserIntervention\s+\S+\s+\[default\]\s+not yet\s", out, re.M)
    assert len(out.splitlines()) == len(settings.SETTINGS) + 2  # a heading and a key


def test_setting_what_nothing_reads_says_so_and_promises_no_restart(tmp_path, capsys,
                                                                    monkeypatch, seen_events):
    monkeypatch.setenv("DTCORE_CONF", str(tmp_path / "DT.conf"))
    assert cli.main(["config", "set", "UserIntervention", "1"]) == 0
    out = capsys.readouterr().out
    assert "nothing in dtcore reads it yet" in out and "restart" not in out
    assert not [e for e in seen_events if e.id == 6001]


def test_the_table_says_truly_which_settings_the_engine_reads():
    """Recomputed from the source: a setting is read when some module other
    than the table indexes a mapping with its name (``config["X"]``) or asks
    the table for its default."""
    src = Path(settings.__file__).parents[1]
    read = set()
    for path in src.rglob("*.py"):
        if path.name == "settings.py":
            continue
        text = path.read_text()
        read |= set(re.findall(r'\[\s*"([A-Za-z0-9]+)"\s*\]', text))
        read |= set(re.findall(r'settings\.(?:default|check)\(\s*"([A-Za-z0-9]+)"', text))
    claimed = {n for n, s in settings.SETTINGS.items() if s.use == settings.ENGINE}
    unread = {n for n, s in settings.SETTINGS.items() if s.use != settings.ENGINE}
    assert claimed <= read, f"claimed live but nothing reads them: {sorted(claimed - read)}"
    assert not unread & read, f"read, but shown as unused: {sorted(unread & read)}"


def test_reload_takes_the_files_new_values_but_the_environment_still_wins(tmp_path):
    conf = tmp_path / "DT.conf"
    conf.write_text("TGRetryLocked=3\nNetPort=1501\n")
    config = Config(conf, env={"DTCORE_NETPORT": "1502"})
    conf.write_text("TGRetryLocked=9\nNetPort=1600\nMaxLogFileSize=2097152\n")
    assert sorted(config.reload()) == ["MaxLogFileSize", "TGRetryLocked"]
    assert config["TGRetryLocked"] == 9 and config["NetPort"] == 1502
    assert config.origin("MaxLogFileSize") == "file"
    conf.write_text("TGRetryLocked=-5\n")
    with pytest.raises(InvalidParameterError):
        config.reload()
    assert config["TGRetryLocked"] == 9  # a broken file changes nothing
    conf.write_text("")  # what the file no longer sets goes back to its default
    assert sorted(config.reload()) == ["MaxLogFileSize", "TGRetryLocked"]
    assert config["TGRetryLocked"] == settings.default("TGRetryLocked")
    assert config.origin("TGRetryLocked") == "default"
