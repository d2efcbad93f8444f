"""``dtcore profile`` in the terminal: the profile document as tables."""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _mb(n: float) -> str:
    return f"{n / 1e6:,.2f}"


def _s(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:,.1f}"


def print_profile(doc: dict[str, Any]) -> None:
    out = Console()
    p, link, st = doc["predicted"], doc["link"], doc["settings"]
    out.print(f"difference mirror of {doc['files']:,} files, {_mb(doc['bytes_total'])} MB "
              f"(profiled in {_s(doc['seconds'])} s; nothing was sent or changed)")
    out.print(f"would send {_mb(p['data_bytes'])} MB of data, {_mb(p['wire_bytes'])} MB on the "
              f"wire in {p['frames']:,} frames; about {_s(p['seconds'])} s at this link's "
              f"{_mb(link['bytes_per_second'])} MB/s (round trip {link['rtt_seconds'] * 1e3:.2f} ms)")
    out.print(f"settings: checksum {st['checksum']}, MirrorChunkSize {st['MirrorChunkSize']:,}, "
              f"SmallFileThreshold {st['SmallFileThreshold']:,}, MaxChecksumBlocks "
              f"{st['MaxChecksumBlocks']}, compression {st['compression_mode']} (here it "
              f"{'compresses' if st['compression'] else 'sends raw'})")

    smp = doc.get("sample")
    if smp:
        w = smp["would_send"]
        out.print(f"sampled: looked at {smp['looked_at']:,} files, estimated "
                  f"{smp['not_looked_at']:,}: they would send {_mb(w['estimate'])} MB "
                  f"({_mb(w['low'])}-{_mb(w['high'])} MB, {smp['confidence']:.0%} bounds); "
                  "the tables below include the estimates")
    t = Table(title="what each file needs")
    for col in ("choice", "files", "MB", "would send (MB)"):
        t.add_column(col, justify="left" if col == "choice" else "right")
    for choice, c in doc["choices"].items():
        t.add_row(choice, f"{c['files']:,}", _mb(c["bytes"]), _mb(c["would_send"]))
    out.print(t)

    t = Table(title="where the time goes")
    for col in ("side", "stage", "seconds", "calls", "MB", "MB/s"):
        t.add_column(col, justify="left" if col in ("side", "stage") else "right")
    for s in doc["stages"]:
        rate = _mb(s["bytes"] / s["seconds"]) if s["bytes"] and s["seconds"] > 0 else "-"
        t.add_row(s["side"], s["stage"], _s(s["seconds"]), f"{s['calls']:,}",
                  _mb(s["bytes"]) if s["bytes"] else "-", rate)
    out.print(t)
    cpu = doc["cpu"]
    out.print(f"CPU: source {_s(cpu['source']['cpu_seconds'])} s ({cpu['source']['busy_cores']:.2f}"
              f" cores busy), target {_s(cpu['target']['cpu_seconds'])} s "
              f"({cpu['target']['busy_cores']:.2f} cores, all of its sessions)")

    t = Table(title="other settings (from this pass)")
    for col in ("setting", "value", "wire MB", "seconds", "checksum requests", ""):
        t.add_column(col, justify="left" if col in ("setting", "") else "right")
    for setting, rows in doc["what_if"].items():
        for r in rows:
            t.add_row(setting, str(r["value"]),
                      _mb(r["wire_bytes"]) if "wire_bytes" in r else "-",
                      _s(r["seconds"]) if "seconds" in r else
                      (f"+{_s(r['round_trip_seconds'])}" if "round_trip_seconds" in r else "-"),
                      f"{r['checksum_requests']:,}" if "checksum_requests" in r else "-",
                      "" if r["exact"] else "at most")
    out.print(t)

    for key, title in (("top_bytes", "files with most to send"), ("top_seconds", "slowest files")):
        if doc[key]:
            t = Table(title=title)
            for col in ("path", "choice", "MB", "would send (MB)", "seconds"):
                t.add_column(col, justify="left" if col in ("path", "choice") else "right")
            for f in doc[key]:
                t.add_row(f["path"], f["choice"], _mb(f["size"]), _mb(f["would_send"]),
                          _s(f["seconds"]))
            out.print(t)
    hist = doc["changed_fraction"]
    most = max((h["files"] for h in hist), default=0)
    if most:
        out.print("changed fraction of the files compared by blocks or rolling delta:")
        for h in hist:
            bar = "#" * max(1 if h["files"] else 0, round(40 * h["files"] / most))
            out.print(f"  {h['from']:>4.0%}-{h['to']:<4.0%} {h['files']:>8,} {bar}")
    if doc["folders"]:
        t = Table(title="folders where the changes are")
        for col in ("folder", "files", "would send (MB)"):
            t.add_column(col, justify="left" if col == "folder" else "right")
        for f in doc["folders"]:
            t.add_row(f["folder"], f"{f['files']:,}", _mb(f["would_send"]))
        out.print(t)
    py = doc.get("python_profile")
    if py:
        t = Table(title=f"Python functions with most time of their own ({py['file']})")
        for col in ("function", "calls", "own s", "cumulative s"):
            t.add_column(col, justify="left" if col == "function" else "right")
        for f in py["top"]:
            t.add_row(f["function"], f"{f['calls']:,}", _s(f["own_seconds"]),
                      _s(f["cumulative_seconds"]))
        out.print(t)
    ran = doc.get("mirror") and doc["mirror"]["ran"]
    if ran:
        out.print(f"then the mirror ran: {_s(ran['seconds'])} s (predicted {_s(p['seconds'])}), "
                  f"{_mb(ran['data_bytes'])} MB of data (predicted {_mb(p['data_bytes'])}), "
                  f"{_mb(ran['wire_bytes'])} MB on the wire (predicted {_mb(p['wire_bytes'])})")
    o = doc["orphan_removal"]
    if any(o.values()):
        out.print(f"orphan removal would remove {o['files']:,} files and {o['directories']:,} "
                  f"folders ({_mb(o['bytes'])} MB)")
