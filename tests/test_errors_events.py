import re

import pytest

from dtcore import errors
from dtcore._error_table import CODES
from dtcore.control import events
from dtcore.control.catalogue import EVENTS, connection_label, render


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
