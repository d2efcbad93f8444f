"""Request and reply bodies: each spelled once, round-tripping, and strict
about what a peer sends."""
import ast
from pathlib import Path

import pytest

import dtcore
from dtcore.errors import StreamError
from dtcore.protocol import messages as m

EXAMPLES = [
    m.ManifestRequest(65536, 100), m.SumsRequest(b"a/\xffb", 3, 32, 65536),
    m.SignatureRequest(b"x", 4096), m.ReadRequest(b"x", 10, 4096), m.ReadlinkRequest(b"l"),
    m.OrphansRequest((b"a", b"b/c")), m.StateRequest("OK", "mirror complete"), m.StateRequest(),
]


@pytest.mark.parametrize("request_", EXAMPLES, ids=lambda r: type(r).__name__)
def test_requests_round_trip(request_):
    assert m.REQUESTS[request_.METHOD] is type(request_)
    assert type(request_).parse(request_.fields()) == request_


@pytest.mark.parametrize("reply", [
    m.ManifestReply(True), m.ManifestReply(False), m.FileReply(-1), m.FileReply(7),
    m.SignatureReply(100, 2),
    m.OrphansReply(1, 2, 3), m.OrphansReply(0, 0, 0, True), m.StateReply("Mirror Required")])
def test_replies_round_trip(reply):
    assert type(reply).parse(reply.fields()) == reply


@pytest.mark.parametrize("ack", [
    m.Ack(), m.Ack((m.OpFailure(b"a", -173, 28, "No space left on device"),)),
    m.Ack(missed=(b"new/name", b"\xff")), m.Ack(missed=(b"x",), more_missed=True)])
def test_acks_round_trip(ack):
    assert m.Ack.parse(ack.fields()) == ack


@pytest.mark.parametrize("cls, fields", [
    (m.Ack, {"dropped": [], "missed": ["zz"]}),
    (m.Ack, {"dropped": [], "missed": ["61"] * (m.Ack.MAX_MISSED + 1)}),
    (m.Ack, {"dropped": [], "missed": [], "more_missed": 1}),
    (m.SumsRequest, {"path": "zz", "first": 0, "count": 1, "block": 4096}),
    (m.SumsRequest, {"path": "78", "first": -1, "count": 1, "block": 4096}),
    (m.SumsRequest, {"path": "78", "first": 0, "count": 1, "block": 1 << 21}),
    (m.SumsRequest, {"path": "78", "first": 0, "count": m.MAX_READ, "block": 4096}),
    (m.SumsRequest, {"path": "78", "first": True, "count": 1, "block": 4096}),
    (m.ReadRequest, {"path": "78", "offset": 0, "length": m.MAX_READ + 1}),
    (m.ReadRequest, {"offset": 0, "length": 1}),
    (m.ManifestRequest, {"hash_below": m.MAX_HASH_BELOW + 1}),
    (m.ManifestReply, {"more": 1}),
    (m.ManifestReply, {}),
    (m.OrphansRequest, {"paths": "78"}),
    (m.OrphansRequest, {"paths": [1]}),
    (m.StateRequest, {"set": 4}),
    (m.Hello, {"target_path": ["nested"]}),
    (m.FileReply, {"size": "big"}),
])
def test_hostile_fields_are_stream_errors(cls, fields):
    with pytest.raises(StreamError):
        cls.parse(fields)


def _strings(tree):
    """String constants of a module, leaving out its ``__all__``."""
    skip = {id(n) for node in tree.body if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            for n in ast.walk(node)}
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip]


def test_method_names_are_spelled_only_in_messages():
    package = Path(dtcore.__file__).parent
    names = set(m.REQUESTS) | {m.METHOD_FIELD}
    for path in package.rglob("*.py"):
        if path.name != "messages.py":
            found = names.intersection(_strings(ast.parse(path.read_text())))
            if path == package / "__init__.py":  # the API's names: dtcore.signature is a function
                found -= set(dtcore.__all__)
            assert not found, f"{path} spells {found}"



def test_root_attributes_round_trip():
    req = m.RootRequest(b"\x07" * 40)
    assert m.RootRequest.parse(req.fields()) == req and m.REQUESTS["root_attributes"] is m.RootRequest
