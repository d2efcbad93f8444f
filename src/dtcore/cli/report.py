"""``--json`` and ``--itemize``: what a command did, for scripts and for
eyes.  The JSON summary is one object on stdout; its ``schema`` number
changes whenever a field changes meaning or goes away."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from dtcore.source.mirror import MirrorResult
from dtcore.source.restore import RestoreResult

SCHEMA = 1


def summary(command: str, code: int, reason: str, result: object = None) -> dict[str, Any]:
    """The final summary: the command, its exit code and reason, and what
    its mirror (or verify, or restore) did."""
    out: dict[str, Any] = {"schema": SCHEMA, "command": command, "exit": code, "reason": reason}
    if isinstance(result, MirrorResult):
        out.update(files=result.files, directories=result.directories,
                   bytes_total=result.bytes_total, bytes_sent=result.bytes_sent,
                   bytes_on_wire=result.wire_bytes, bytes_skipped=result.bytes_skipped,
                   transfer=dict(result.strategies), hard_links=result.hard_links,
                   orphans=dict(result.orphans), differences=len(result.differences),
                   given_up=[{"path": p, "code": c, "errno": e, "reason": r}
                             for p, c, e, r in result.dropped],
                   skipped_special=len(result.special), resumed=result.resumed,
                   seconds=round(result.seconds, 3))
    elif isinstance(result, RestoreResult):
        out.update({k: v for k, v in dataclasses.asdict(result).items() if k != "seconds"},
                   seconds=round(result.seconds, 3))
    return out


def print_summary(*args: Any) -> None:
    print(json.dumps(summary(*args)), flush=True)


def print_items(items: list[tuple[str, str]], prefix: str = "") -> None:
    """One line per change: what was (or would be) done, and to which path."""
    for action, path in items:
        print(f"{prefix}{action:<10} {path}")
