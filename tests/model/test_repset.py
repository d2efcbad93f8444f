"""Replication set rules (Inc, Exc, Rec, wildcards) against a plain-Python
reading of the rules, and the CalculateOnConnect totals."""
from __future__ import annotations

import pytest

from dtcore.errors import InvalidParameterError, InvalidSourcePathError
from dtcore.model.repset import ReplicationSet, Rule


@pytest.fixture
def tree(tmp_path):
    for rel, size in {"a/x.txt": 10, "a/y.tmp": 20, "a/sub/z.txt": 30, "a/sub/w.tmp": 40,
                      "b/keep.txt": 50, "top.txt": 60, "logs/2026/app.log": 70}.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * size)
    return tmp_path


def files(rs):
    return sorted(e.path.decode() for e in rs.walk() if e.kind != "d")


def test_whole_root_by_default(tree):
    rs = ReplicationSet(tree)
    assert len(files(rs)) == 7
    totals = rs.calculate()
    assert (totals.bytes, totals.files, totals.directories) == (280, 7, 5)


def test_exclude_wildcard_beats_include_at_same_depth(tree):
    rs = ReplicationSet(tree, ["", "a/*.tmp,Exc", "a/sub/*.tmp,Exc"])
    assert files(rs) == ["a/sub/z.txt", "a/x.txt", "b/keep.txt", "logs/2026/app.log", "top.txt"]


def test_recursive_and_not(tree):
    rs = ReplicationSet(tree, [Rule("a", include=True, recursive=False)])
    assert files(rs) == ["a/x.txt", "a/y.tmp"]  # the rule covers a's own files only
    rs = ReplicationSet(tree, ["a,Inc,Rec", "a/sub,Exc,Rec"])
    assert files(rs) == ["a/x.txt", "a/y.tmp"]
    rs = ReplicationSet(tree, ["a,Exc,Rec", "a/sub/z.txt,Inc"])  # more specific wins
    assert files(rs) == ["a/sub/z.txt"]


def test_wildcards_in_folders(tree):
    rs = ReplicationSet(tree, ["logs/*/*.log,Inc"])
    assert files(rs) == ["logs/2026/app.log"]
    assert [e.path for e in rs.walk() if e.kind == "d"] == [b"logs", b"logs/2026"]


def test_bad_rules_and_roots(tree):
    for bad in ["../x", "/abs", "a,Inc,Exc", "a,Sometimes"]:
        with pytest.raises(InvalidParameterError):
            ReplicationSet(tree, [bad] if "," in bad else [Rule(bad)])
    with pytest.raises(InvalidSourcePathError):
        ReplicationSet(tree / "missing")
    assert str(Rule.parse("a/*.tmp,Exc")) == "a/*.tmp,Exc"


def test_a_pattern_with_rec_applies_at_every_depth(tree):
    """As the guide's Rec says, the rule applies to the folders beneath its
    path too: *.tmp,Exc,Rec leaves out every .tmp file of the set."""
    rs = ReplicationSet(tree, ["", "*.tmp,Exc,Rec"])
    assert files(rs) == ["a/sub/z.txt", "a/x.txt", "b/keep.txt", "logs/2026/app.log", "top.txt"]
    rs = ReplicationSet(tree, ["", "a/sub/*.tmp,Exc,Rec"])  # beneath its folder only
    assert "a/y.tmp" in files(rs) and "a/sub/w.tmp" not in files(rs)
    rs = ReplicationSet(tree, ["", "*.tmp,Exc"])  # without Rec: the root's own files only
    assert "a/y.tmp" in files(rs)
    rs = ReplicationSet(tree, ["*.txt,Inc,Rec"])  # included at any depth, with their folders
    assert files(rs) == ["a/sub/z.txt", "a/x.txt", "b/keep.txt", "top.txt"]
    assert {e.path for e in rs.walk() if e.kind == "d"} >= {b"a", b"a/sub", b"b"}
