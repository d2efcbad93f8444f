"""Prometheus metrics: every chapter 3 statistic of a running engine, under
stable names with units and labels, plus events counted by ID.

Names follow Prometheus' conventions and are derived from the guide's
statistic names by one rule (so they never drift): ``dtcore_<section>_`` and
the name in snake case, without the ``con`` prefix of connection fields;
``_bytes`` where the statistic counts bytes, ``_timestamp_seconds`` for
times, ``_total`` for counters.  Statistics that cannot apply
(``stats.NOT_APPLICABLE``) are left out rather than shown as zeros.  A connection's samples carry ``connection``
(its number), ``peer`` and ``target_path`` labels; a target's ``peer`` and
``local``."""
from __future__ import annotations

import re
from typing import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dtcore.control.events import EventCounts
from dtcore.control.stats import NOT_APPLICABLE, PERCENT_SCALE, SECTIONS, Statistics

# statistics that only grow (the rest go up and down)
COUNTERS = frozenset({
    "Logins", "FailedLogins", "RepOpsGenerated", "RepBytesGenerated", "MirOpsGenerated",
    "MirBytesGenerated", "FailedMirrorCount", "FailedRepCount", "ActFailCount",
    "autoDisConnects", "autoReConnects",
    "Ops Received", "Mirror Ops Received", "Retries", "OpsDropped", "Orphan Files Removed",
    "Orphan Directories Removed", "Orphan Bytes Removed", "TasksSucceeded", "TasksFailed",
    "TasksIgnored",
    "conOpsTx", "conBytesTx", "conBytesCompressedTx", "conOpsRx", "conBytesRx",
    "conResentOpCount", "conBytesSkipped", "conTaskCmdsSubmitted", "conTasksSucceeded",
    "conTasksFailed", "conTasksIgnored",
})
# the statistic's own unit where its name does not say it
_UNITS = {"ConRPL": "seconds", "conBandwidthLimit": "bytes_per_second",
          "conMirrorPercent": "percent", "DriverQueuePercent": "percent"}
_HELP = {
    "conBytesTx": "bytes of ops sent, before compression",
    "conBytesCompressedTx": "bytes sent on the wire, after compression and framing",
    "ConRPL": "recovery point latency: how far the target lags the source",
    "conMirrorPercent": "how far the running mirror has got",
    "conMirrorBytesRemaining": "bytes the running mirror has still to go through",
}


def metric_name(section: str, field: str) -> str:
    """The Prometheus name of a statistic (without ``_total``)."""
    time = field.startswith("@")
    name = field.lstrip("@*")
    if section == "connection" and name[:3].lower() == "con" and name[3:4].isupper():
        name = name[3:]
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|\s+", "_", name).lower()
    words = re.sub(r"_+", "_", words).replace("dis_connects", "disconnects").replace(
        "re_connects", "reconnects")
    unit = "timestamp_seconds" if time else _UNITS.get(name) or _UNITS.get(field.lstrip("@*"))
    if unit is None and "bytes" in words.split("_"):
        words = "_".join(w for w in words.split("_") if w != "bytes")
        unit = "bytes"
    if unit and words.endswith("_" + unit):
        words = words[:-len(unit) - 1]
    return f"dtcore_{section}_{words}" + (f"_{unit}" if unit else "")


# every statistic's name, made once rather than at each scrape
_NAMES = {(section, f): metric_name(section, f) for section, fields in SECTIONS.items()
          for f in fields if f[0] != "*"}


class EngineCollector(Collector):
    """Collects an engine's statistics at each scrape (one snapshot per
    scrape) and its event counts."""

    def __init__(self, stats: Statistics, events: EventCounts,
                 target_path: Callable[[int], str] = lambda conn_id: "") -> None:
        self.stats = stats
        self.events = events
        self.target_path = target_path

    def collect(self) -> Iterator[Metric]:
        snap = self.stats.snapshot()
        rows = {"server": [(snap.server, snap.server_text, {})],
                "target": [(v, t, {"peer": t["PeerAddress"], "local": t["LocalAddress"]})
                           for v, t in snap.targets],
                "connection": []}
        for (v, t), conn_id in zip(snap.connections, snap.connection_ids):
            rows["connection"].append((v, t, {"connection": str(conn_id),
                                              "peer": t["conPeerAddress"],
                                              "target_path": self.target_path(conn_id)}))
        for section, fields in SECTIONS.items():
            numeric = [f for f in fields if f[0] != "*"]
            label_names = ["connection", "peer", "target_path"] if section == "connection" else \
                ["peer", "local"] if section == "target" else []
            for index, field in enumerate(numeric):
                name = field.lstrip("@")
                if name in NOT_APPLICABLE:
                    continue
                kind = CounterMetricFamily if name in COUNTERS else GaugeMetricFamily
                family = kind(_NAMES[section, field],
                              _HELP.get(name, f"the guide's {name} statistic"), labels=label_names)
                for values, _, labels in rows[section]:
                    value = float(values[index])
                    if name == "conMirrorPercent":
                        value /= PERCENT_SCALE
                    family.add_metric([labels[k] for k in label_names], value)
                yield family
        events = CounterMetricFamily("dtcore_events", "events emitted, by the guide's ID",
                                     labels=["id", "level"])
        for (event_id, level), n in self.events.items():
            events.add_metric([str(event_id), level], n)
        yield events
