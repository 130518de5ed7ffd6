"""The web dashboard and the health routes behind it.

    GET /                 the page (public: it holds no data; its script asks for a token)
    GET /ui/<file>        its script and style (vcapp/api/static/)
    GET /v1/dashboard     machines, apps, instances, mesh paths, warnings (vcapp/views/overview.py)
    GET /v1/history       ?subject=node/<name>|app/<name>&range=1h|24h|7d: one series;
                          without subject: for each subject its newest sample and the mean
                          of the last hour, with uptime and failovers
    GET /v1/warnings      the current warnings, oldest first
    GET /metrics          Prometheus text (admin token, like every other route)

The page polls /v1/dashboard and /v1/events every 2 s with the admin token from
sessionStorage as a Bearer header, and /v1/history for its charts.
"""

from __future__ import annotations

import time
from pathlib import Path

from flask import Blueprint, Response, jsonify, request, send_from_directory

from vcapp.api import context
from vcapp.api.auth import public
from vcapp.api.validate import parse_duration
from vcapp.errors import BadRequest, NotFound
from vcapp.state import keys, metrics
from vcapp.views import overview, prometheus

bp = Blueprint("dashboard", __name__)

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = ("dash.js", "dash.css")
MAX_RANGE = 8 * 86400  # the coarsest tier keeps 8 days
HOUR = 3600
NO_CACHE = {"Cache-Control": "no-store"}


@bp.get("/")
@public
def page():
    """The dashboard page (the data comes from the authenticated routes below)."""
    return send_from_directory(STATIC, "index.html", max_age=0)


@bp.get("/ui/<name>")
@public
def asset(name: str):
    """The dashboard's own script and style."""
    if name not in ASSETS:
        raise NotFound(f"no dashboard file {name!r}")
    return send_from_directory(STATIC, name, max_age=0)


@bp.get("/v1/dashboard")
def dashboard():
    """Everything the dashboard shows except events and charts, in one answer."""
    return jsonify(overview.snapshot(context.store())), 200, NO_CACHE


@bp.get("/v1/warnings")
def warnings():
    """Current warnings (disk/memory nearly full, flapping, crash loops, relay), oldest first."""
    found = (context.store().value(keys.WARNINGS) or {}).values()
    return jsonify(warnings=sorted(found, key=lambda w: w.get("since", 0)))


def _subject(value: str | None) -> str:
    kind, _, name = (value or "").partition("/")
    if kind not in ("node", "app") or not name or "/" in name:
        raise BadRequest("subject: give node/<machine> or app/<app>, e.g. ?subject=node/home-1")
    return value


@bp.get("/v1/history")
def history():
    """One subject's series over ?range= (default 1h, at most 8d), or every subject's recent means."""
    now = time.time()
    seconds = parse_duration(request.args.get("range", "1h"), "range")
    if not 0 < seconds <= MAX_RANGE:
        raise BadRequest("range: give a duration between 1s and 8d, e.g. 1h, 24h or 7d")
    store = context.store()
    if request.args.get("subject") is None:
        return jsonify(subjects=_summaries(store, now), now=now)
    subject = _subject(request.args.get("subject"))
    chunks = metrics.load(store, subject)
    if not chunks:
        raise NotFound(f"no history for {subject}; machines and apps are sampled every "
                       f"{metrics.SAMPLE_EVERY_S} s by the controller")
    return jsonify(subject=subject, range=seconds, now=now, **metrics.series(chunks, seconds, now))


def _summaries(store, now: float) -> dict:
    summary = store.value(keys.HEALTH_SUMMARY) or {}
    out = {}
    for subject, chunks in sorted(metrics.load_all(store).items()):
        kind, name = subject.split("/", 1)
        hour = metrics.series(chunks, HOUR, now)["cols"]
        means = {m: _mean(v) for m, v in hour.items()}
        out[subject] = {"latest": metrics.latest(chunks), "hour": means,
                        **((summary.get(kind + "s") or {}).get(name) or {})}
    return out


def _mean(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 2) if present else None


@bp.get("/metrics")
def prometheus_metrics():
    """Machine and app gauges and counters in Prometheus text format."""
    text = prometheus.render(overview.snapshot(context.store()))
    return Response(text, mimetype="text/plain", headers={"Content-Type": "text/plain; version=0.0.4"})
