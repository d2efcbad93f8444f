"""The AgentX codec and lookups against plain-Python oracles: PDUs built by
hand as RFC 2741 lays them out, and linear scans for GetNext and GetBulk."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dtcore.control import agentx
from dtcore.control.agentx import (
    COUNTER32,
    END_OF_MIB_VIEW,
    GETBULK,
    GETNEXT,
    NO_SUCH_INSTANCE,
    NO_SUCH_OBJECT,
    PDU,
    SearchRange,
    View,
)

oids = st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=12).map(tuple) | \
    st.lists(st.integers(0, 300), min_size=1, max_size=6).map(lambda t: (1, 3, 6, 1, *t))


def _oid_by_hand(oid, include, order):
    """RFC 2741 5.1 without the prefix shortcut: every sub-identifier written out."""
    return struct.pack(order + "BBBx", len(oid), 0, include) + \
        b"".join(struct.pack(order + "I", s) for s in oid)


def _pdu_by_hand(kind, payload, order, packet=7):
    flags = 0x10 if order == ">" else 0
    return struct.pack(order + "BBBxIIII", 1, kind, flags, 3, 5, packet, len(payload)) + payload


@given(st.lists(st.tuples(oids, st.booleans(), oids), min_size=1, max_size=5),
       st.sampled_from([">", "<"]))
def test_search_ranges_decode_in_either_byte_order_and_with_or_without_the_prefix(ranges, order):
    payload = b"".join(_oid_by_hand(s, inc, order) + _oid_by_hand(e, 0, order)
                       for s, inc, e in ranges)
    pdu = agentx.decode_pdu(_pdu_by_hand(GETNEXT, payload, order))
    assert pdu.kind == GETNEXT and (pdu.session, pdu.transaction, pdu.packet) == (3, 5, 7)
    assert pdu.ranges == [SearchRange(s, inc, e) for s, inc, e in ranges]
    # our own encoding (which folds 1.3.6.1.x into the prefix byte) decodes the same
    ours = b"".join(agentx.encode_oid(s, inc) + agentx.encode_oid(e) for s, inc, e in ranges)
    assert agentx.decode_pdu(_pdu_by_hand(GETNEXT, ours, ">")).ranges == pdu.ranges


@given(oids, st.integers(0, 2**32 - 1), st.binary(max_size=40))
def test_values_are_laid_out_as_the_rfc_says(oid, number, data):
    head = struct.pack(">Hxx", COUNTER32)
    assert agentx.encode_value(oid, (COUNTER32, number)) == \
        head + agentx.encode_oid(oid) + struct.pack(">I", number)
    octets = agentx.encode_value(oid, (agentx.OCTET_STRING, data))
    body = octets[len(head) + len(agentx.encode_oid(oid)):]
    assert body[:4] == struct.pack(">I", len(data)) and body[4:4 + len(data)] == data
    assert len(body) % 4 == 0 and set(body[4 + len(data):]) <= {0}


def test_a_truncated_pdu_is_refused():
    whole = _pdu_by_hand(GETNEXT, _oid_by_hand((1, 3, 6), 0, ">") * 2, ">")
    with pytest.raises(agentx.AgentXError):
        agentx.decode_pdu(whole[:-3])
    with pytest.raises(agentx.AgentXError):
        agentx.decode_header(whole[:10])


def _next_by_scan(values, r):
    for oid in sorted(values):
        if (oid >= r.start if r.include else oid > r.start) and (not r.end or oid < r.end):
            return oid, values[oid]
    return r.start, (END_OF_MIB_VIEW, None)


tables = st.dictionaries(st.lists(st.integers(0, 5), min_size=1, max_size=4).map(tuple),
                         st.integers(0, 100).map(lambda v: (COUNTER32, v)), max_size=30)
ranges = st.builds(SearchRange, st.lists(st.integers(0, 5), max_size=4).map(tuple), st.booleans(),
                   st.lists(st.integers(0, 6), max_size=3).map(tuple))


@given(tables, st.lists(ranges, min_size=1, max_size=4))
def test_getnext_finds_what_a_linear_scan_finds(values, rs):
    view = View(values)
    got = agentx.answer(PDU(GETNEXT, 0, 0, 0, rs), view)
    assert got == [_next_by_scan(values, r) for r in rs]


@given(tables, st.lists(ranges, min_size=1, max_size=4), st.integers(0, 4), st.integers(0, 6))
def test_getbulk_is_non_repeaters_then_rounds_of_getnext(values, rs, non_repeaters, repetitions):
    view = View(values)
    non_repeaters = min(non_repeaters, len(rs))
    expect = [_next_by_scan(values, r) for r in rs[:non_repeaters]]
    repeat = rs[non_repeaters:]
    for _ in range(repetitions if repeat else 0):
        row = [_next_by_scan(values, r) for r in repeat]
        expect += row
        if all(v[0] == END_OF_MIB_VIEW for _, v in row):
            break
        repeat = [SearchRange(o, False, r.end) for (o, _), r in zip(row, repeat)]
    pdu = PDU(GETBULK, 0, 0, 0, rs, non_repeaters, repetitions)
    assert agentx.answer(pdu, view) == expect


def test_get_tells_a_missing_instance_from_an_unknown_object():
    view = View({(1, 2, 3, 0): (COUNTER32, 1)}, objects=[(1, 2, 3), (1, 2, 4)])
    assert view.get((1, 2, 3, 0)) == (COUNTER32, 1)
    assert view.get((1, 2, 4, 0))[0] == NO_SUCH_INSTANCE
    assert view.get((1, 2, 5, 0))[0] == NO_SUCH_OBJECT
