import ast
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dtcore import errors
from dtcore._error_table import CODES
from dtcore.control import events
from dtcore.control.catalogue import EVENTS, connection_label, render
from dtcore.target.states import DataStates


def test_every_error_code_of_the_guide_has_a_class_in_our_words(guide_lines):
    text = guide_lines
    start = next(i for i, l in enumerate(text) if "Chapter 5 Error codes" in l and l.startswith("#"))
    guide = {int(m.group(1)): m.group(2).strip() for l in text[start:start + 200]
             for m in [re.match(r"^- (-\d+) (.*)", l)] if m}
    assert set(guide) == set(CODES)
    for code, (name, message) in CODES.items():
        cls = errors.error_class(code)
        assert cls.code == code and issubclass(cls, errors.DTError)
        assert message and message.lower() != guide[code].lower()
        assert errors.from_code(code).code == code
    assert len({n for n, _ in CODES.values()}) == len(CODES)


def test_written_classes_keep_their_builtin_bases():
    assert isinstance(errors.from_code(-101, "x"), ValueError)
    assert isinstance(errors.from_code(-173), OSError)
    e = errors.IncompatibleVersionError()
    assert (e.code, e.name) == (-157, "IncompatibleVersion") and str(e).startswith("[-157] ")
    assert errors.from_code(-4242, "odd").code == -4242


def test_event_levels_are_the_guides(guide_lines):
    text = guide_lines
    levels = {}
    for i, l in enumerate(text):
        m = re.match(r"^#* *\**(\d{4}):", l.strip())
        if m and int(m.group(1)) in EVENTS and int(m.group(1)) not in levels:
            block = " ".join(text[i:i + 12]).replace("*", "")
            levels[int(m.group(1))] = re.search(r"Level\W+([A-Za-z]+)", block).group(1)
    assert set(levels) == set(EVENTS)
    assert {i: k.level for i, k in EVENTS.items()} == levels


def test_required_ranges_are_covered():
    ids = set(EVENTS)
    assert set(range(5700, 5719)) - ids <= {5705, 5706, 5707, 5713, 5714}  # failover and licensing
    assert {4007, 4019, 4020, 4021, 4022, 4023, 4070, 4071, 4072, 4096, 4110, 4120, 4150} <= ids
    assert {4200, 4201, 4202, 4203, 4204, 6000, 6001, 6002} <= ids


def test_emit_renders_the_template_and_reaches_subscribers():
    got = []
    unsubscribe = events.subscribe(got.append)
    try:
        conn = connection_label("beta", "127.0.0.1", "docs", 3)
        e = events.emit(4019, conn=conn)
        assert got == [e] and e.level == "Information"
        assert e.message == "Mirror started to beta (127.0.0.1), replication set docs, connection 3"
        assert render(4110, {"path": "/a"}) == "Target disk full writing /a; retrying ({retries})"
        with pytest.raises(ValueError):
            events.emit(1)
    finally:
        unsubscribe()


_SRC = Path(errors.__file__).parent
_CSRC = _SRC.parents[1] / "csrc"


def test_every_class_the_engine_raises_is_written_out():
    """A class imported from dtcore.errors anywhere in the package is a real
    class statement in errors.py (so type checkers see it), with a builtin
    base besides DTError where one fits."""
    written = {n.name for n in ast.parse(Path(errors.__file__).read_text()).body
               if isinstance(n, ast.ClassDef)}
    used = {a.name for path in _SRC.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module == "dtcore.errors"
            for a in node.names if a.name.endswith("Error")}
    assert used and used <= written, used - written
    for name in written - {"DTError", "QueueClosedError"}:
        assert len(getattr(errors, name).__mro__) > 3, f"{name} has no builtin base"


def test_status_codes_are_declared_once_and_all_mapped():
    """dt_status.h holds the numbers; the .pxd names every code; the mapper
    gives each failure code its own class (TIMEOUT and SPACE are handled by
    the bindings themselves and never raised)."""
    header = set(re.findall(r"\b(DT_E_[A-Z]+) = -\d+", (_CSRC / "dt_status.h").read_text()))
    pxd = (_SRC / "_native" / "_c.pxd").read_text()
    assert header and all(re.search(rf"^\s+{c}$", pxd, re.M) for c in header)
    names = set(re.findall(r'return "([A-Z]+)"', pxd))
    assert names == {c[len("DT_E_"):] for c in header}
    for py in list(_SRC.rglob("*.py")) + list((_SRC / "_native").glob("*.pyx")):
        assert not re.search(r"\b_?DT_E_\w+\s*=|_CLOSED\s*=\s*-\d", py.read_text()), py
    for name in names - {"TIMEOUT", "SPACE"}:
        err = errors.native_error(name, "what", 3, 17, 1, 2, 5, "ctx", journal=True)
        assert type(err) is not errors.DTError and "what" in str(err), name
        plain = errors.native_error(name, "what", 3, 17, 1, 2, 5, "ctx")
        assert type(plain) is not errors.DTError, name
    assert type(errors.native_error("status -99", "x", -1, -1, 0, 0)) is errors.DTError


def test_an_embedder_hears_nothing_unless_it_configures_logging(tmp_path):
    """The dtcore logger has a NullHandler: a warning event in a program that
    set up no logging prints nothing (Python's last-resort handler would)."""
    code = ("from dtcore.control.events import emit\n"
            "emit(6001, detail='a warning nobody asked to see')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stderr == ""


def test_a_target_path_becoming_ok_logs_at_info_and_keeps_the_guides_level(tmp_path, caplog):
    seen = []
    unsubscribe = events.subscribe(seen.append)
    try:
        with caplog.at_level(logging.INFO, logger="dtcore"):
            states = DataStates(str(tmp_path))
            states.set("job", "OK", "mirror complete")
            states.set("job", "Mirror Required")
    finally:
        unsubscribe()
    levels = [r.levelno for r in caplog.records if r.getMessage().startswith("4065")]
    assert levels == [logging.INFO, logging.WARNING]
    assert [e.level for e in seen if e.id == 4065] == [events.WARNING, events.WARNING]
