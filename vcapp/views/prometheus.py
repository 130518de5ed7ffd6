"""The cluster as Prometheus text (exposition format 0.0.4), from an overview snapshot. Pure.

Machines: vcapp_node_up, _cpus, _load1, _memory_bytes, _memory_available_bytes, _disk_bytes,
_disk_free_bytes, _uptime_ratio{window}. Apps: vcapp_app_instances_desired, _instances_healthy,
_cpu_percent, _memory_bytes, vcapp_app_restarts_total (counter), _uptime_ratio{window},
_failovers{window}. Warnings: vcapp_warnings{kind, severity}. Request rates per app are in
the history (/v1/history, fields req_s and err_s) but not exported here yet; a Prometheus
that wants them can scrape the node routers' Caddy metrics.
"""

from __future__ import annotations

MB = 1 << 20
WINDOWS = ("24h", "7d")


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


class Text:
    """Families in the order first declared; samples grouped under their family."""

    def __init__(self) -> None:
        self.families: dict[str, tuple[str, str, list[str]]] = {}

    def add(self, name: str, kind: str, help_text: str, labels: dict, value: float | None) -> None:
        if value is None:
            return
        family = self.families.setdefault(name, (kind, help_text, []))
        family[2].append(f"{name}{_labels(labels)} {float(value):g}")

    def render(self) -> str:
        out = []
        for name, (kind, help_text, samples) in self.families.items():
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]
        return "\n".join(out) + "\n"


def _ratio(pct: float | None) -> float | None:
    return None if pct is None else pct / 100


def _mb(value: float | None) -> float | None:
    return None if value is None else value * MB


def _nodes(text: Text, nodes: list[dict]) -> None:
    for n in nodes:
        lab = {"node": n["name"], "site": n.get("site") or ""}
        text.add("vcapp_node_up", "gauge", "1 while the machine's liveness lease is alive", lab, 1 if n.get("up") else 0)
        if not n.get("up"):
            continue
        text.add("vcapp_node_cpus", "gauge", "CPUs of the machine", lab, n.get("cpus"))
        text.add("vcapp_node_load1", "gauge", "1-minute load average", lab, n.get("load1"))
        text.add("vcapp_node_memory_bytes", "gauge", "memory of the machine", lab, _mb(n.get("memory_mb")))
        text.add("vcapp_node_memory_available_bytes", "gauge", "memory available", lab, _mb(n.get("free_memory_mb")))
        text.add("vcapp_node_disk_bytes", "gauge", "disk of the data directory", lab, _mb(n.get("disk_mb")))
        text.add("vcapp_node_disk_free_bytes", "gauge", "free disk of the data directory", lab, _mb(n.get("free_disk_mb")))
    for n in nodes:
        for w in WINDOWS:
            text.add("vcapp_node_uptime_ratio", "gauge", "share of samples the machine was up",
                     {"node": n["name"], "window": w}, _ratio(n.get(f"uptime_{w}")))


def _apps(text: Text, apps: list[dict]) -> None:
    for a in apps:
        lab = {"app": a["name"]}
        text.add("vcapp_app_instances_desired", "gauge", "instances the app should run", lab, a.get("count"))
        text.add("vcapp_app_instances_healthy", "gauge", "instances running and healthy", lab, a.get("healthy"))
        text.add("vcapp_app_cpu_percent", "gauge", "CPU % summed over instances", lab,
                 sum(i.get("cpu_percent") or 0 for i in a["instances"]))
        text.add("vcapp_app_memory_bytes", "gauge", "memory summed over instances", lab,
                 _mb(sum(i.get("memory_mb") or 0 for i in a["instances"])))
        text.add("vcapp_app_restarts_total", "counter", "container restarts of the current instances", lab,
                 sum(i.get("restarts") or 0 for i in a["instances"]))
    for a in apps:
        for w in WINDOWS:
            lab = {"app": a["name"], "window": w}
            text.add("vcapp_app_uptime_ratio", "gauge", "share of samples with a healthy instance", lab,
                     _ratio(a.get(f"uptime_{w}")))
            text.add("vcapp_app_failovers", "gauge", "instances moved off a dead machine in the window", lab,
                     a.get(f"failovers_{w}"))


def render(snap: dict) -> str:
    """Prometheus text for a `vcapp.overview.snapshot`."""
    text = Text()
    _nodes(text, snap["nodes"])
    _apps(text, snap["apps"])
    counts: dict[tuple[str, str], int] = {}
    for w in snap["warnings"]:
        key = (w.get("kind", "?"), w.get("severity", "warning"))
        counts[key] = counts.get(key, 0) + 1
    text.add("vcapp_warnings", "gauge", "current warnings (see GET /v1/warnings)", {}, len(snap["warnings"]))
    for (kind, severity), n in sorted(counts.items()):
        text.add("vcapp_warnings_by_kind", "gauge", "current warnings by kind", {"kind": kind, "severity": severity}, n)
    return text.render()
