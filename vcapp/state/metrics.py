"""Metrics history: per machine and per app series, kept for 8 days in bounded space.

A *subject* is "node/<name>" or "app/<name>"; each has a few metrics (columns) sampled every
SAMPLE_EVERY_S seconds by the controller (vcapp/node/metrics_loop.py). Samples go to the
finest tier; when a bucket of a coarser tier closes it is filled from the tier below
(mean for gauges and up/down, max for counters). Each tier is cut into chunks, one etcd key
per subject, tier and chunk, so a sample rewrites one small key, not a whole series:

    /vc/metrics/<kind>/<name>/<tier>/<chunk start, 10 digits>
        {"start": t0, "step": s, "cols": {"cpu": [v | null, ...], "mem": [...], ...}}
        slot i holds the bucket [t0 + i*s, t0 + (i+1)*s); every column has chunk/step slots

    tier  step   kept   chunk   slots/chunk  chunks
    10s   10 s   2 h    10 min   60           13
    1m    1 min  2 d    3 h      180          17
    15m   15 min 8 d    1 d      96           9

Chunks that end before now - kept are deleted, so a subject never holds more than the
39 chunks above: about 4,400 slots a column whatever the age of the cluster. Everything in
this module but `load`/`save` is pure.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Iterable

from vcapp.state import keys
from vcapp.state.store import Store, delete_op, put_op

SAMPLE_EVERY_S = 10  # s: a machine's record (load, memory, disk) is refreshed every 10 s anyway


@dataclass(frozen=True)
class Tier:
    name: str
    step: int   # s per slot
    span: int   # s kept
    chunk: int  # s per etcd key


TIERS = (
    Tier("10s", 10, 2 * 3600, 600),
    Tier("1m", 60, 2 * 86400, 3 * 3600),
    Tier("15m", 900, 8 * 86400, 86400),
)
TIER_BY_NAME = {t.name: t for t in TIERS}

# Machine columns: cpu % (load1 / cpus), memory and disk used %, up 1/0.
NODE_METRICS = ("cpu", "mem", "disk", "up")
# App columns: cpu % and memory MB summed over instances, healthy instances, restarts (a
# counter, summed over instances), up = at least one healthy instance (1/0).
APP_METRICS = ("cpu", "mem_mb", "healthy", "restarts", "up")
COUNTERS = frozenset({"restarts"})  # downsampled with max: a mean of a counter means nothing
DIGITS = 2  # values are rounded: the charts show whole percents, the JSON stays small

Chunks = dict[str, dict]  # "<tier>/<start>" -> chunk


def chunk_id(tier: Tier, start: int) -> str:
    return f"{tier.name}/{start:010d}"


def chunk_start(tier: Tier, t: float) -> int:
    return int(t // tier.chunk) * tier.chunk


def _slot(chunk: dict, t: float) -> int:
    return int((t - chunk["start"]) // chunk["step"])


def _empty_chunk(tier: Tier, start: int, metrics: Iterable[str]) -> dict:
    return {"start": start, "step": tier.step, "cols": {m: [None] * (tier.chunk // tier.step) for m in metrics}}


def _get_or_new(chunks: Chunks, tier: Tier, t: float, metric_names: Iterable[str]) -> tuple[str, dict]:
    cid = chunk_id(tier, chunk_start(tier, t))
    chunk = chunks.get(cid)
    if chunk is None:
        chunk = chunks[cid] = _empty_chunk(tier, chunk_start(tier, t), metric_names)
    for m in metric_names:
        chunk["cols"].setdefault(m, [None] * (tier.chunk // tier.step))
    return cid, chunk


def _round(v: float | None) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    return round(float(v), DIGITS)


def aggregate(metric: str, values: list[float]) -> float | None:
    """One coarse slot from the finer slots inside it: max for counters, else the mean."""
    if not values:
        return None
    return _round(max(values) if metric in COUNTERS else sum(values) / len(values))


def points(chunks: Chunks, tier: Tier, since: float, until: float) -> list[tuple[int, dict]]:
    """(slot time, {metric: value}) of a tier in [since, until), oldest first, empty slots left out."""
    out = []
    for cid in sorted(c for c in chunks if c.startswith(tier.name + "/")):
        chunk = chunks[cid]
        if chunk["start"] + tier.chunk <= since or chunk["start"] >= until:
            continue
        for i in range(tier.chunk // tier.step):
            t = chunk["start"] + i * tier.step
            if since <= t < until:
                row = {m: col[i] for m, col in chunk["cols"].items() if col[i] is not None}
                if row:
                    out.append((t, row))
    return out


def ingest(chunks: Chunks, t: float, values: dict[str, float | None]) -> tuple[set[str], set[str]]:
    """Add one sample at time `t`; returns (chunk ids changed, chunk ids deleted).

    Mutates `chunks`: the sample lands in the finest tier; every coarser tier fills the
    bucket that closed before `t` from the tier below, if it is still empty; chunks past
    their tier's span are dropped.
    """
    changed: set[str] = set()
    fine = TIERS[0]
    cid, chunk = _get_or_new(chunks, fine, t, values)
    i = _slot(chunk, t)
    for m, v in values.items():
        chunk["cols"][m][i] = _round(v)
    changed.add(cid)
    for finer, tier in zip(TIERS, TIERS[1:]):
        changed |= _close_bucket(chunks, finer, tier, t)
    return changed, _expire(chunks, t)


def _bucket_rows(chunks: Chunks, finer: Tier, start: int, step: int) -> list[dict]:
    """The finer tier's non-empty slots in [start, start + step): one chunk holds them all,
    since every chunk length is a multiple of the next tier's step."""
    chunk = chunks.get(chunk_id(finer, chunk_start(finer, start)))
    if chunk is None:
        return []
    first = _slot(chunk, start)
    rows = []
    for i in range(first, first + step // finer.step):
        row = {m: col[i] for m, col in chunk["cols"].items() if col[i] is not None}
        if row:
            rows.append(row)
    return rows


def _close_bucket(chunks: Chunks, finer: Tier, tier: Tier, t: float) -> set[str]:
    start = int(t // tier.step) * tier.step - tier.step  # the last complete bucket
    cid = chunk_id(tier, chunk_start(tier, start))
    chunk = chunks.get(cid)
    if chunk is not None and any(col[_slot(chunk, start)] is not None for col in chunk["cols"].values()):
        return set()
    rows = _bucket_rows(chunks, finer, start, tier.step)
    if not rows:
        return set()
    metric_names = sorted({m for row in rows for m in row})
    cid, chunk = _get_or_new(chunks, tier, start, metric_names)
    i = _slot(chunk, start)
    for m in metric_names:
        chunk["cols"][m][i] = aggregate(m, [row[m] for row in rows if m in row])
    return {cid}


def _expire(chunks: Chunks, t: float) -> set[str]:
    gone = set()
    for cid in list(chunks):
        tier = TIER_BY_NAME.get(cid.split("/", 1)[0])
        if tier is None or chunks[cid]["start"] + tier.chunk <= t - tier.span:
            del chunks[cid]
            gone.add(cid)
    return gone


def pick_tier(seconds: float) -> Tier:
    """The finest tier that still keeps `seconds` of history."""
    for tier in TIERS:
        if seconds <= tier.span:
            return tier
    return TIERS[-1]


def _segments(chunks: Chunks, seconds: float, now: float) -> tuple[Tier, list[tuple[int, int, dict]]]:
    """(tier, [(time, step, row)]): the last `seconds` from the finest tier that keeps them, then
    the newer part not yet downsampled from each finer tier in turn, without overlap."""
    tier = pick_tier(seconds)
    since = now - seconds + 1  # (now - seconds, now]
    segments = [(t, tier.step, row) for t, row in points(chunks, tier, since, now + 1)]
    covered = segments[-1][0] + tier.step if segments else since
    for finer in reversed(TIERS[:TIERS.index(tier)]):
        fresh = points(chunks, finer, covered, now + 1)
        segments += [(t, finer.step, row) for t, row in fresh]
        if fresh:
            covered = fresh[-1][0] + finer.step
    return tier, segments


def series(chunks: Chunks, seconds: float, now: float) -> dict:
    """The last `seconds` at the finest tier that keeps them: {tier, step, t: [...], cols: {m: [...]}}.

    The newest part not yet downsampled into that tier comes from the finer tiers, averaged
    to its step, so a 7-day chart reaches up to now."""
    tier, segments = _segments(chunks, seconds, now)
    rows = _regroup([(t, row) for t, _, row in segments], tier.step)
    times = sorted(rows)
    metric_names = sorted({m for row in rows.values() for m in row})
    return {"tier": tier.name, "step": tier.step, "t": times,
            "cols": {m: [rows[t].get(m) for t in times] for m in metric_names}}


def _regroup(rows: list[tuple[int, dict]], step: int) -> dict[int, dict]:
    groups: dict[int, list[dict]] = {}
    for t, row in rows:
        groups.setdefault(int(t // step) * step, []).append(row)
    return {b: {m: aggregate(m, [r[m] for r in g if m in r]) for m in {m for r in g for m in r}}
            for b, g in groups.items()}


def mean(chunks: Chunks, metric: str, seconds: float, now: float) -> float | None:
    """Time-weighted mean of one metric over the last `seconds` (uptime = mean of `up`), or None."""
    _, segments = _segments(chunks, seconds, now)
    weighted = [(step, row[metric]) for _, step, row in segments if row.get(metric) is not None]
    total = sum(step for step, _ in weighted)
    return _round(sum(step * v for step, v in weighted) / total) if total else None


def latest(chunks: Chunks) -> dict:
    """The newest sample of the finest tier: {metric: value}."""
    rows = points(chunks, TIERS[0], 0, float("inf"))
    return rows[-1][1] if rows else {}


def size(chunks: Chunks) -> int:
    """Bytes the chunks take as stored (JSON)."""
    return sum(len(json.dumps(c, sort_keys=True)) for c in chunks.values())


# ---- etcd --------------------------------------------------------------------------------

def subject_prefix(subject: str) -> str:
    return keys.metrics(subject)


def load(store: Store, subject: str) -> Chunks:
    prefix = subject_prefix(subject)
    return {keys.name_of(e.key, prefix): e.value for e in store.list(prefix) if isinstance(e.value, dict)}


def load_all(store: Store) -> dict[str, Chunks]:
    """Every subject's chunks: {"node/home-1": {...}, "app/blog": {...}}."""
    out: dict[str, Chunks] = {}
    for e in store.list(keys.METRICS):
        kind, name, tier, start = keys.name_of(e.key, keys.METRICS).split("/", 3)
        out.setdefault(f"{kind}/{name}", {})[f"{tier}/{start}"] = e.value
    return out


def save_ops(subject: str, chunks: Chunks, changed: set[str], deleted: set[str]) -> list[dict]:
    prefix = subject_prefix(subject)
    ops = [put_op(prefix + cid, chunks[cid]) for cid in sorted(changed) if cid in chunks]
    return ops + [delete_op(prefix + cid) for cid in sorted(deleted)]
