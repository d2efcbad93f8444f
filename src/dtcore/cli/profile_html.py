"""``dtcore profile --html FILE``: the profile document as one self-contained
page, its plots drawn by matplotlib as inline SVG (no code runs, nothing is
fetched): bytes by transfer choice, time by stage on each side, the changed
fraction of the files compared by blocks, and, when the mirror ran after
the profile (``--then-mirror``), predicted against actual.  The document
itself rides along as JSON in a data block."""
from __future__ import annotations

import html
import io
import json
from typing import Any

_STYLE = """body{font-family:sans-serif;margin:2em;max-width:70em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .6em}
td.n{text-align:right}h2{margin-top:1.5em}figure{display:inline-block;margin:0 1em 1em 0}"""


def _figure(draw: Any, title: str, kind: str) -> str:
    import matplotlib
    matplotlib.use("Agg")  # files only: no display
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    draw(ax)
    ax.set_title(title)
    out = io.StringIO()
    fig.savefig(out, format="svg")
    svg = out.getvalue()
    return f'<figure data-plot="{kind}">{svg[svg.index("<svg"):]}</figure>'


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(
        f'<td class="n">{v:,}</td>' if isinstance(v, int) and not isinstance(v, bool) else
        f'<td class="n">{v:.3f}</td>' if isinstance(v, float) else
        f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render(doc: dict[str, Any]) -> str:
    """The page for a profile document."""
    choices = doc["choices"]
    actual = doc["mirror"]["ran"] if doc.get("mirror") else None
    names = list(choices)
    plots = [
        _figure(lambda ax: (ax.bar(names, [choices[c]["would_send"] / 1e6 for c in names]),
                            ax.set_ylabel("MB it would send")), "bytes by choice", "choices"),
        _figure(lambda ax: (
            ax.barh([f"{s['side']}: {s['stage']}" for s in doc["stages"]][::-1],
                    [s["seconds"] for s in doc["stages"]][::-1]),
            ax.set_xlabel("seconds")), "time by stage", "stages"),
        _figure(lambda ax: (
            ax.bar([f"{h['from']:.0%}" for h in doc["changed_fraction"]],
                   [h["files"] for h in doc["changed_fraction"]]),
            ax.set_xlabel("changed fraction (from)"), ax.set_ylabel("files")),
            "files compared by blocks, by changed fraction", "changed"),
    ]
    if actual is not None:
        p = doc["predicted"]
        labels = ["seconds", "data bytes", "wire bytes"]
        ratios = [actual["seconds"] / p["seconds"] if p["seconds"] else 0.0,
                  actual["data_bytes"] / p["data_bytes"] if p["data_bytes"] else 1.0,
                  actual["wire_bytes"] / p["wire_bytes"] if p["wire_bytes"] else 1.0]

        def versus(ax: Any) -> None:
            ax.bar(labels, ratios)
            ax.axhline(1.0, color="black", linewidth=0.8)
            ax.set_ylabel("actual / predicted")
        plots.append(_figure(versus, "the mirror that ran, against the prediction", "versus"))
    p, link = doc["predicted"], doc["link"]
    parts = [
        f"<h1>dtcore profile: difference mirror of {doc['files']:,} files</h1>",
        f"<p>Would send {p['data_bytes']:,} bytes of data, {p['wire_bytes']:,} on the wire; "
        f"about {p['seconds']:.3f} s at {link['bytes_per_second'] / 1e6:,.1f} MB/s "
        f"(round trip {link['rtt_seconds'] * 1e3:.2f} ms). Nothing was sent or changed.</p>",
        *plots,
        "<h2>Choices</h2>", _table(["choice", "files", "bytes", "would send"], [
            [c, v["files"], v["bytes"], v["would_send"]] for c, v in choices.items()]),
        "<h2>Stages</h2>", _table(["side", "stage", "seconds", "calls", "bytes"], [
            [s["side"], s["stage"], s["seconds"], s["calls"], s["bytes"]] for s in doc["stages"]]),
        "<h2>Other settings</h2>", _table(["setting", "value", "wire bytes", "requests", "exact"], [
            [k, str(r["value"]), r.get("wire_bytes", "-"), r.get("checksum_requests", "-"),
             "yes" if r["exact"] else "at most"] for k, rows in doc["what_if"].items()
            for r in rows]),
        "<h2>Files with the most to send</h2>", _table(["path", "choice", "size", "would send"], [
            [f["path"], f["choice"], f["size"], f["would_send"]] for f in doc["top_bytes"]]),
        "<h2>Folders</h2>", _table(["folder", "files", "would send"], [
            [f["folder"], f["files"], f["would_send"]] for f in doc["folders"]]),
        f'<script type="application/json" id="profile">'
        f'{html.escape(json.dumps(doc), quote=False)}</script>',
    ]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>dtcore profile</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>")
