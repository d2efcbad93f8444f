"""The tree keeps its shape: imports run one way through the layers, and the
embedding API is exactly the pinned list of names."""
import ast
from pathlib import Path

import dtcore

PACKAGE = Path(dtcore.__file__).parent

# A module may import its own package, anything ranked lower, the base and
# the control plane.  Packages of equal rank (source and target, protocol and
# apply) never import each other.
RANK = {
    "model": 1, "_twin": 1.5,
    "queues": 2,
    "protocol": 3, "apply": 3,
    "source": 4, "target": 4,
    "engine": 5,
    "cli": 6,
    "__main__": 7,  # python -m dtcore
}
BASE = {"errors", "_error_table", "_buffers", "_files", "_native", "_version"}
CONTROL = "control"


def _layer(module: str) -> str:
    """The layer of a dotted module name below ``dtcore``."""
    return module.split(".")[1] if module.count(".") else ""


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "dtcore":  # "from dtcore import x": x is a submodule
                found += [(node.lineno, f"dtcore.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return [(line, m) for line, m in found if m == "dtcore" or m.startswith("dtcore.")]


def _allowed(importer: str, imported: str) -> bool:
    if imported == "dtcore":
        return False  # the public API is for embedders, never for the engine itself
    theirs = _layer(imported)
    if theirs in BASE:
        return True
    mine = _layer(importer)
    if mine in BASE:
        return False
    if theirs == CONTROL:
        return True
    if mine == CONTROL or mine == theirs:
        return mine == theirs
    return RANK[theirs] < RANK[mine]


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts)
        if name.endswith(".__init__"):
            name = name[: -len(".__init__")]
        if name != "dtcore":
            out.append((name, path))
    return out


def test_every_layer_is_known():
    layers = {_layer(name) for name, _ in _modules()}
    assert layers <= set(RANK) | BASE | {CONTROL}, layers - set(RANK) - BASE - {CONTROL}


def test_imports_run_one_way():
    bad = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {imported}"
           for name, path in _modules() for line, imported in _imports(path)
           if not _allowed(name, imported)]
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_the_rule_catches_violations():
    assert not _allowed("dtcore.source.connection", "dtcore.target.session")
    assert not _allowed("dtcore.target.session", "dtcore.source.mirror.run")
    assert not _allowed("dtcore.control.enginelog", "dtcore.cli.logviewer")
    assert not _allowed("dtcore.model.manifest", "dtcore.apply.safe_paths")
    assert not _allowed("dtcore.errors", "dtcore.control.events")
    assert not _allowed("dtcore.engine", "dtcore")
    assert _allowed("dtcore.cli.commands", "dtcore.engine")
    assert _allowed("dtcore.model.checksum", "dtcore.control.settings")


PUBLIC = [
    "AccessDeniedError", "Compressor", "ConState", "Config", "Connection",
    "ConnectionFailedError", "DTError", "Delta", "Engine", "EngineLog", "Event",
    "FileAccessError", "InvalidParameterError", "InvalidParameterTypeError",
    "InvalidPathError", "InvalidStatisticsFileError", "MirrorOptions", "MirrorResult",
    "NetworkFailedError", "Op", "OpKind", "OutOfMemoryError", "Payload", "QueueLogFileError",
    "Replication", "ReplicationSet", "RestoreResult", "Rule", "Signature", "Snapshot",
    "Statistics", "StatsFile", "StatsLogger", "StatsServer", "StreamError", "Target",
    "TargetDiskFullError", "apply_delta", "block_checksums", "delta", "differing_ranges",
    "file_checksums", "file_delta", "file_signature", "pack_batch", "signature", "subscribe",
    "xxh3_64",
]


def test_public_api_is_pinned():
    assert dtcore.__all__ == sorted(dtcore.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(dtcore, name).__module__.startswith("dtcore"), name
