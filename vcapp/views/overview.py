"""The cluster in one read, for the dashboard, /metrics and `vcapp status`.

`snapshot(store)` lists machines, liveness, apps, assignments and runtime reports once and
joins them: each machine with the app instances assigned to it and its mesh paths, each app
with its release, instances, health, URL and uptime summary, and the current warnings.
"""

from __future__ import annotations

import time

from vcapp.state import instances, keys, membership

NODE_FIELDS = ("name", "site", "addr", "up", "drained", "storage_drained", "last_seen", "state_since", "cpus",
               "load1", "memory_mb", "free_memory_mb", "disk_mb", "free_disk_mb", "labels", "version", "build")


def _instances(store) -> list[dict]:
    """One row per assigned instance: app, instance, node, and the report of that node if any."""
    reports = {(r["app"], r["instance"], r["node"]): r for r in instances.reports(store)}
    rows = []
    for a in instances.every_assignment(store):
        rep = reports.get((a.get("app"), str(a.get("instance")), a.get("node")), {})
        rows.append({"app": a.get("app"), "instance": str(a.get("instance")), "node": a.get("node"),
                     "state": rep.get("state", "assigned"), "health": rep.get("health", "-"),
                     "release": rep.get("release") or a.get("release"), "restarts": rep.get("restarts", 0),
                     "cpu_percent": rep.get("cpu_percent"), "memory_mb": rep.get("memory_mb")})
    return sorted(rows, key=lambda r: (r["app"] or "", len(r["instance"]), r["instance"]))


def _app_row(spec: dict, instances: list[dict], domain: str, summary: dict) -> dict:
    name = spec["name"]
    healthy = [i for i in instances if i["health"] == "healthy" and i["state"] == "running"]
    return {"name": name, "release": spec.get("release"), "image": spec.get("image"),
            "count": spec.get("count", 0), "healthy": len(healthy),
            "health": _app_health(spec, instances, healthy), "policy": spec.get("policy", "public"),
            "url": f"https://{name}.{domain}" if domain else None,
            "instances": instances, **(summary.get(name) or {})}


def _app_health(spec: dict, instances: list[dict], healthy: list[dict]) -> str:
    if not spec.get("image"):
        return "not deployed"
    if spec.get("count", 0) == 0:
        return "stopped"
    if len(healthy) >= spec.get("count", 0):
        return "healthy"
    return "degraded" if healthy else "down"


def snapshot(store) -> dict:
    """Machines, apps and warnings as the dashboard shows them."""
    cluster = store.value(keys.CLUSTER) or {}
    machines = membership.list_nodes(store)
    instances = _instances(store)
    mesh = {keys.name_of(e.key, keys.MESHPATHS): e.value or {} for e in store.list(keys.MESHPATHS)}
    summary = store.value(keys.HEALTH_SUMMARY) or {}
    nodes = []
    for m in sorted(machines, key=lambda m: m["name"]):
        row = {k: m.get(k) for k in NODE_FIELDS}
        row["instances"] = [i for i in instances if i["node"] == m["name"]]
        row["mesh"] = {peer: p.get("path") for peer, p in mesh.get(m["name"], {}).items()}
        row.update((summary.get("nodes") or {}).get(m["name"]) or {})
        nodes.append(row)
    specs = [dict(e.value, name=keys.name_of(e.key, keys.APPS)) for e in store.list(keys.APPS)]
    apps = [_app_row(s, [i for i in instances if i["app"] == s["name"]], cluster.get("domain", ""),
                     summary.get("apps") or {}) for s in sorted(specs, key=lambda s: s["name"])]
    warnings = sorted((store.value(keys.WARNINGS) or {}).values(), key=lambda w: w.get("since", 0))
    return {"cluster": {"name": cluster.get("name"), "domain": cluster.get("domain")},
            "nodes": nodes, "apps": apps, "warnings": warnings, "now": time.time()}
