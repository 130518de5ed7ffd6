"""The placer's loop on the elected controller: snapshot etcd, `placer.plan`, apply in one txn.

Every PLACE_EVERY_S: read machines, liveness, app specs and assignments; build a
`ClusterState` (each spec's release replaced by `apps.runtime_release`, so a restart or new
secrets roll the instances; apps never deployed count as 0 instances); plan; then write
the placements and delete the stops in one transaction that holds only if every app spec
and assignment it read is unchanged, and every machine it placed on still has the same
liveness key. If anything moved meanwhile the plan is dropped and the next tick plans again.
Pending reasons go to /vc/pending/<app>; placements, moves off dead machines ("failover"),
stops and new pending reasons become events. A move off a live machine (drained, respread,
constraint changed) of an instance without volumes carries `handover: {from, at}`: the old
machine keeps its instance serving until the new one is healthy (vcapp/node/runtime_loop.py).

Each assignment also carries its app's `volumes`, `bucket` and `s3_endpoint` (PASS_THROUGH): the
runtime loop's self-fencing stops exactly the instances whose assignment names volumes, and an
instance of an app with a bucket gets its S3 endpoint from them. The pure planner copies only
placer.model.RUNTIME_FIELDS, so this loop adds them, and rewrites an assignment in place (same
machine, no restart) when an app gains or loses volumes.
"""

from __future__ import annotations

import logging
import time

from placer.model import ClusterState, Plan
from placer.plan import plan
from vcapp.node.harness import Every
from vcapp.state import events, keys
from vcapp.state.store import Entry, Store, absent, delete_op, put_op, unchanged
from vcapp.views.placement import Snapshot

log = logging.getLogger("vcapp.placer")

# Half a lease TTL: a dead machine's instances move within ~0.5 s of its lease expiring, and
# five small etcd reads twice a second cost nothing at 10 machines.
PLACE_EVERY_S = 0.5
# App spec fields copied into every assignment beside the planner's: the runtime's fencing and
# S3 endpoint key on them.
PASS_THROUGH = ("volumes", "bucket", "s3_endpoint")


class PlacerLoop:
    name = "placer"

    def __init__(self, ctx) -> None:
        self.every = Every(PLACE_EVERY_S)

    def step(self, ctx) -> None:
        if self.every.due():
            place_once(ctx.store)


def place_once(store: Store, now: float | None = None) -> Plan | None:
    """One pass; returns the plan applied, or None when the state moved and nothing was written."""
    snap = Snapshot(store)
    now = time.time() if now is None else now
    state = snap.state(now)
    result = plan(state)
    ops = _assignment_ops(snap, state, result) + _pending_ops(snap, result, now)
    if not ops:
        return result
    if not store.txn(_guards(snap, result), ops):
        log.info("cluster state changed during placement; planning again")
        return None
    _record(store, snap, result)
    return result


def _assignment_ops(snap: Snapshot, state: ClusterState, result: Plan) -> list[dict]:
    by_name = {a.name: a for a in state.apps}
    ops, written = [], set()
    for p in result.placements:
        rec = _pass_through(p.to_json(by_name[p.app]), snap.apps.get(p.app))
        if p.previous_node and snap.gone(p.previous_node):
            rec["failover"] = {"from": p.previous_node, "at": time.time()}
        elif p.previous_node and not rec.get("volumes"):  # a move off a live machine: make before break
            rec["handover"] = {"from": p.previous_node, "at": time.time()}
        ops.append(put_op(keys.assign(p.app, p.instance), rec))
        written.add(keys.assign(p.app, p.instance))
    ops += [delete_op(keys.assign(s.app, s.instance)) for s in result.stops]
    written |= {keys.assign(s.app, s.instance) for s in result.stops}
    for key, entry in snap.assign.items():  # an app that gained or lost volumes: same place, new fields
        rec = entry.value or {}
        fresh = _pass_through(rec, snap.apps.get(rec.get("app")))
        if key not in written and fresh != rec:
            ops.append(put_op(key, fresh))
    return ops


def _pass_through(rec: dict, app: Entry | None) -> dict:
    """`rec` with the PASS_THROUGH fields of its app's spec (absent in the spec: absent here)."""
    spec = (app.value if app else None) or {}
    out = {k: v for k, v in rec.items() if k not in PASS_THROUGH}
    out.update({k: spec[k] for k in PASS_THROUGH if spec.get(k)})
    return out


def _pending_ops(snap: Snapshot, result: Plan, now: float) -> list[dict]:
    want: dict[str, dict[str, str]] = {}
    for p in result.pending:
        want.setdefault(p.app, {})[p.instance] = p.reason
    ops = []
    for app, reasons in want.items():
        old = snap.pending.get(app)
        if old is None or old.value.get("instances") != reasons:
            since = old.value.get("since", now) if old else now
            ops.append(put_op(keys.pending(app), {"instances": reasons, "since": since}))
    ops += [delete_op(keys.pending(app)) for app in snap.pending if app not in want]
    return ops


def _guards(snap: Snapshot, result: Plan) -> list[dict]:
    guards = [unchanged(e.key, e.mod_revision) for e in snap.apps.values()]
    guards += [unchanged(e.key, e.mod_revision) for e in snap.assign.values()]
    for p in result.placements:
        key = keys.assign(p.app, p.instance)
        if key not in snap.assign:
            guards.append(absent(key))
    for node in {p.node for p in result.placements}:
        guards.append(unchanged(snap.alive[node].key, snap.alive[node].mod_revision))
    for app in {p.app for p in result.pending} | set(snap.pending):
        entry = snap.pending.get(app)
        guards.append(unchanged(keys.pending(app), entry.mod_revision if entry else 0))
    return guards


def _record(store: Store, snap: Snapshot, result: Plan) -> None:
    """Events for what changed: placements, failovers, stops, newly pending instances."""
    for p in result.placements:
        kind = "placed"
        if p.previous_node and snap.gone(p.previous_node):
            kind = "failover"
        elif p.previous_node is None and keys.assign(p.app, p.instance) in snap.assign:
            kind = "release"
        events.record(store, kind, f"{p.app}/{p.instance}: {p.reason}", app=p.app, instance=p.instance,
                      node=p.node, previous_node=p.previous_node)
    for s in result.stops:
        events.record(store, "stopped", f"{s.app}/{s.instance} on {s.node} stopped: {s.reason}", app=s.app,
                      instance=s.instance, node=s.node)
    for p in result.pending:
        old = snap.pending.get(p.app)
        if old is None or old.value.get("instances", {}).get(p.instance) != p.reason:
            events.record(store, "pending", f"{p.app}/{p.instance} is pending: {p.reason}", app=p.app,
                          instance=p.instance)
