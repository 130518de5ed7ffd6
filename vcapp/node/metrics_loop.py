"""Metrics and warnings: the controller samples the cluster.

`MetricsLoop` (leader only), every SAMPLE_EVERY_S: reads machines, apps, runtime reports and
the node routers' request counters (requests/s and 5xx/s per app through the routers, which
every request from the edge passes), adds one sample per machine and per app to the history (vcapp/state/metrics.py) and writes the
changed chunks in one transaction; computes the warnings (vcapp/views/warnings.py), stores them at
/vc/health/warnings and records an event when one starts or clears; every SUMMARY_EVERY_S
writes uptime % and failover counts per app over 24 h and 7 d to /vc/health/summary
(at once after a failover, so the count on the dashboard follows the event).
A new controller reloads the history from etcd, so nothing lives only in memory except the
recent node transitions and failovers it re-reads from the events at start. Loading a week of
history takes seconds (bench/dashboard_cost.py), so it is read in a thread, off the tick that
renews the lease; sampling starts once it is in.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from vcapp.node.harness import Every, Job
from vcapp.state import apps, certificates, events, instances, keys, membership, metrics
from vcapp.state.store import Store, StoreUnavailable
from vcapp.views import warnings

log = logging.getLogger("vcapp.metrics")

SUMMARY_EVERY_S = 60.0  # uptime over 24 h moves slowly; a minute is plenty fresh
WEEK_S = 7 * 86400
DAY_S = 86400
# Written in one transaction; etcd refuses more than 128 operations in one by default.
MAX_TXN_OPS = 100
# A pause this long in our sampling means another machine led meanwhile: reload from etcd.
STALE_AFTER_S = 3 * metrics.SAMPLE_EVERY_S
EVENT_PAGE = 1000


# ---- samples (pure) ------------------------------------------------------------------------

def _pct(used: float, total: float) -> float | None:
    return None if not total else max(0.0, min(100.0, 100.0 * used / total))


def node_sample(node: dict) -> dict:
    """A machine's sample: cpu % (load1 over cpus), memory and disk used %, up 1/0."""
    if not node.get("up"):
        return {"up": 0}
    return {
        "cpu": _pct(node.get("load1", 0), node.get("cpus", 0)),
        "mem": _pct(node.get("memory_mb", 0) - node.get("free_memory_mb", 0), node.get("memory_mb", 0)),
        "disk": _pct(node.get("disk_mb", 0) - node.get("free_disk_mb", 0), node.get("disk_mb", 0)),
        "up": 1,
    }


def app_sample(spec: dict, reports: list[dict]) -> dict:
    """An app's sample over its instance reports; `up` only while it is meant to run."""
    healthy = [r for r in reports if r.get("health") == "healthy" and r.get("state") == "running"]
    sample = {
        "cpu": sum(r.get("cpu_percent") or 0 for r in reports),
        "mem_mb": sum(r.get("memory_mb") or 0 for r in reports),
        "healthy": len(healthy),
        "restarts": sum(r.get("restarts") or 0 for r in reports),
    }
    if spec.get("image") and spec.get("count", 0) > 0:
        sample["up"] = 1 if healthy else 0
    return sample


class RequestRates:
    """Requests/s and 5xx/s per app, from the node routers' cumulative per-host counters
    (/vc/requests/<node>). Each counter is differenced against its own previous reading and
    time, so publishing jitter does not alias into spikes; a counter that went down (Caddy
    restarted) counts from zero. Until a counter has two readings its rate is unknown."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, str], tuple[float, int, int, float, float]] = {}  # at, req, err, rates

    def sample(self, published: dict[str, dict], app_of: Callable[[str], str | None]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        seen = set()
        for node, rec in published.items():
            at = float(rec.get("at") or 0)
            for host, c in (rec.get("hosts") or {}).items():
                app = app_of(host)
                if not app:
                    continue
                key, req, err = (node, host), int(c.get("requests", 0)), int(c.get("errors", 0))
                seen.add(key)
                prev = self.last.get(key)
                if prev is None:
                    self.last[key] = (at, req, err, None, None)
                    continue
                if at > prev[0]:
                    dt = at - prev[0]
                    r_req = (req - prev[1] if req >= prev[1] else req) / dt
                    r_err = (err - prev[2] if err >= prev[2] else err) / dt
                    self.last[key] = prev = (at, req, err, r_req, r_err)
                if prev[3] is None:
                    continue
                row = out.setdefault(app, {"req_s": 0.0, "err_s": 0.0})
                row["req_s"] = round(row["req_s"] + prev[3], 2)
                row["err_s"] = round(row["err_s"] + prev[4], 2)
        self.last = {k: v for k, v in self.last.items() if k in seen}  # a dead node's counters are gone
        return out


def app_of_host(domain: str | None, specs: list[dict]) -> Callable[[str], str | None]:
    """Which app a hostname belongs to: <app>.<domain> or one of its custom domains."""
    custom = {d: spec["name"] for spec in specs for d in spec.get("domains") or []}
    names = {spec["name"] for spec in specs}
    suffix = f".{domain}" if domain else None

    def app_of(host: str) -> str | None:
        if host in custom:
            return custom[host]
        if suffix and host.endswith(suffix) and host[: -len(suffix)] in names:
            return host[: -len(suffix)]
        return None

    return app_of


def reports_by_app(store: Store, alive: set[str]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for report in instances.reports(store):
        if report["node"] in alive:
            out.setdefault(report["app"], []).append(report)
    return out


# ---- the controller's loop -------------------------------------------------------------------

class MetricsLoop:
    name = "metrics"

    def __init__(self, ctx) -> None:
        self.history: dict[str, metrics.Chunks] | None = None
        self.loader = Job("metrics-load")
        self.sample = Every(metrics.SAMPLE_EVERY_S)  # its age tells how long ago this machine sampled
        self.summary = Every(SUMMARY_EVERY_S)
        self.cursor = ""
        self.transitions: list[tuple[float, str]] = []
        self.failovers: list[tuple[float, str]] = []
        self.rates = RequestRates()

    def step(self, ctx) -> None:
        if not self.sample.ready() or self.loader.running():
            return
        if self.history is None or self.sample.age() > STALE_AFTER_S:
            self._start_loading(ctx.store)
            return
        self.sample.mark()
        sample_once(ctx.store, self.history, time.time(), self.rates)
        failovers = len(self.failovers)
        self._read_events(ctx.store, time.time())
        warn(ctx.store, self.history, self.transitions, time.time())
        if self.summary.ready() or len(self.failovers) > failovers:
            write_summary(ctx.store, self.history, self.failovers, time.time())
            self.summary.mark()

    def _start_loading(self, store: Store) -> None:
        """Read the history in a thread: a week of it takes seconds, longer than a lease tick may."""
        self.history = None
        self.loader.start(self._load, Store(store.endpoints))

    def _load(self, store: Store) -> None:
        try:
            self.history = metrics.load_all(store)
            self._read_events(store, time.time())  # a week of events, also off the tick
            self.sample.soon()  # sample at the next tick
        except StoreUnavailable as e:
            log.warning("metrics history not loaded (%s); trying again", e)

    def _read_events(self, store: Store, now: float) -> None:
        if not self.cursor:
            self.cursor = f"{int((now - WEEK_S) * 1000):013d}"
        while True:
            found = events.since(store, self.cursor, EVENT_PAGE)
            for e in found:
                if e.get("kind") in ("node.up", "node.down") and e.get("node"):
                    self.transitions.append((e["time"], e["node"]))
                elif e.get("kind") == "failover" and e.get("app"):
                    self.failovers.append((e["time"], e["app"]))
            if found:
                self.cursor = found[-1]["id"]
            if len(found) < EVENT_PAGE:
                break
        self.transitions = [x for x in self.transitions if now - x[0] <= warnings.FLAP_WINDOW_S]
        self.failovers = [x for x in self.failovers if now - x[0] <= WEEK_S]


def sample_once(store: Store, history: dict[str, metrics.Chunks], now: float,
                rates: RequestRates | None = None) -> int:
    """Add one sample for every machine and app, write what changed; returns the ops written."""
    nodes = membership.list_nodes(store)
    alive = {n["name"] for n in nodes if n.get("up")}
    samples = {f"node/{n['name']}": node_sample(n) for n in nodes}
    reports = reports_by_app(store, alive)
    specs = apps.list_apps(store)
    traffic: dict[str, dict] = {}
    if rates is not None:
        published = {keys.name_of(e.key, keys.REQUESTS): e.value for e in store.list(keys.REQUESTS)
                     if isinstance(e.value, dict)}
        domain = (store.value(keys.CLUSTER) or {}).get("domain")
        traffic = rates.sample(published, app_of_host(domain, specs))
    for spec in specs:
        samples[f"app/{spec['name']}"] = app_sample(spec, reports.get(spec["name"], []))
        samples[f"app/{spec['name']}"].update(traffic.get(spec["name"], {}))
    ops: list[dict] = []
    for subject, values in samples.items():
        chunks = history.setdefault(subject, {})
        changed, deleted = metrics.ingest(chunks, now, values)
        ops += metrics.save_ops(subject, chunks, changed, deleted)
    for subject in [s for s in history if s not in samples]:
        ops += expire_gone(history, subject, now)
    for i in range(0, len(ops), MAX_TXN_OPS):
        store.txn([], ops[i:i + MAX_TXN_OPS])
    return len(ops)


def expire_gone(history: dict[str, metrics.Chunks], subject: str, now: float) -> list[dict]:
    """A removed machine or destroyed app keeps its history until its tiers expire."""
    chunks = history[subject]
    deleted = metrics._expire(chunks, now)
    if not chunks:
        del history[subject]
    return metrics.save_ops(subject, chunks, set(), deleted)


def restarts_samples(chunks: metrics.Chunks, now: float) -> list[tuple[float, float]]:
    return [(t, row["restarts"]) for t, row in
            metrics.points(chunks, metrics.TIERS[0], now - warnings.CRASH_WINDOW_S, now + 1) if "restarts" in row]


def warn(store: Store, history: dict[str, metrics.Chunks], transitions: list, now: float) -> dict:
    """Compute warnings, store them if they changed, record an event for each start and clear."""
    mesh = {keys.name_of(e.key, keys.MESHPATHS): e.value for e in store.list(keys.MESHPATHS)}
    restarts = {s.split("/", 1)[1]: restarts_samples(c, now) for s, c in history.items() if s.startswith("app/")}
    inputs = warnings.Inputs(membership.list_nodes(store), transitions, restarts, mesh, now,
                             store.value(keys.STORAGE_STATE), certificates.read(store)[0])
    old = store.value(keys.WARNINGS) or {}
    current, started, cleared = warnings.diff(old, warnings.compute(inputs), now)
    if started or cleared:
        store.put(keys.WARNINGS, current)
    for w in started:
        events.record(store, "warning", w["message"], warning=w["id"],
                      **{k: w[k] for k in ("node", "app") if k in w})
    for w in cleared:
        events.record(store, "warning.cleared", f"cleared: {w['message']}", warning=w["id"],
                      **{k: w[k] for k in ("node", "app") if k in w})
    return current


def app_summary(chunks: metrics.Chunks, failovers: list[tuple[float, str]], app: str, now: float) -> dict:
    """Uptime % (share of samples with a healthy instance) and failovers, over 24 h and 7 d."""
    def pct(seconds: float) -> float | None:
        up = metrics.mean(chunks, "up", seconds, now)
        return None if up is None else round(100 * up, 2)

    return {"uptime_24h": pct(DAY_S), "uptime_7d": pct(WEEK_S),
            "failovers_24h": sum(1 for t, a in failovers if a == app and now - t <= DAY_S),
            "failovers_7d": sum(1 for t, a in failovers if a == app and now - t <= WEEK_S)}


def write_summary(store: Store, history: dict[str, metrics.Chunks], failovers: list, now: float) -> dict:
    summary = {"apps": {s.split("/", 1)[1]: app_summary(c, failovers, s.split("/", 1)[1], now)
                        for s, c in history.items() if s.startswith("app/")},
               "nodes": {s.split("/", 1)[1]: {"uptime_24h": _uptime(c, DAY_S, now), "uptime_7d": _uptime(c, WEEK_S, now)}
                         for s, c in history.items() if s.startswith("node/")},
               "at": now}
    store.put(keys.HEALTH_SUMMARY, summary)
    return summary


def _uptime(chunks: metrics.Chunks, seconds: float, now: float) -> float | None:
    up = metrics.mean(chunks, "up", seconds, now)
    return None if up is None else round(100 * up, 2)
