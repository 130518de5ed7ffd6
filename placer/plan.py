"""The placement function: `plan(ClusterState) -> Plan`, pure, no I/O (Nomad's scheduler shape).

Rules, in the order they apply:
1. Existing assignments on live machines that still match their app's constraints are kept
   as they are (no churn); a new release is rolled out in place on the same machine.
   Instances of deleted apps, and slots above a lowered count, are stopped. Every process
   type of an app (web, worker, ...) has its own count and slots ("0", "worker-0"); all of an
   app's instances count as one app for spreading.
2. Instances without a live machine (new, or on a dead machine) are placed, higher
   `priority` apps first, so when room is short the important apps get it. Nothing running
   is preempted.
3. A machine is feasible when it is alive, not drained, matches every constraint (`site` or a label),
   and has the CPU, memory and disk the app requests free. Free is the smaller of
   (total - requests of what the plan runs there) and the measured free figure minus what
   this plan adds: memory is never overcommitted.
4. Among feasible machines, best first: not flapping (back for less than
   FLAP_STABLE_AFTER_S), fewest instances of this app on the machine, then in its site,
   already holds the image, most free memory, name.
5. An instance that fits nowhere is pending, with a reason naming what is short and where
   the most room is ("needs 2048 MB memory; largest free is 1200 MB on office-1").
6. A machine the others cannot reach (`unreachable`: its lease has not expired yet, see
   vcapp/state/peerwatch.py) takes nothing new, and its instances that own no volume move as off a
   dead machine; those with volumes wait for the lease (the machine fences them first).
7. Instances on a drained machine move off it like those of a dead one, but the machine is
   alive: the placement names it as `previous_node`, and the old instance keeps serving until
   the new one is healthy (vcapp/node/placer_loop.py writes the handover). With no room
   elsewhere they stay, pending, where they are.
8. Instances of one app that share a machine (after a failover) are spread again, one move
   per plan, once a stable machine without any of them has room (a machine back from the
   dead counts after FLAP_STABLE_AFTER_S); likewise instances that share a site while a
   stable machine at another site, with none of them, has room: a site's power cut or
   uplink loss then leaves one serving.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from placer.model import (WEB, App, Assignment, ClusterState, Node, Pending, Placement, Plan, Stop, instance_name,
                          process_of)

# A machine whose alive key is younger than this may be flapping (power or link trouble):
# two minutes covers a reboot loop or a flaky uplink that drops every lease renewal or so.
FLAP_STABLE_AFTER_S = 120.0


@dataclass
class _Room:
    """What the plan has put on each machine so far (requests, not measurements)."""

    nodes: dict[str, Node]
    used: dict[str, list[float]] = field(default_factory=dict)   # id -> [cpus, memory, disk], all
    added: dict[str, list[float]] = field(default_factory=dict)  # id -> same, new in this plan

    def take(self, node_id: str, app: App, new: bool) -> None:
        for book in (self.used, self.added) if new else (self.used,):
            row = book.setdefault(node_id, [0.0, 0.0, 0.0])
            row[0] += app.cpus
            row[1] += app.memory_mb
            row[2] += app.disk_mb

    def free(self, node: Node) -> tuple[float, float, float]:
        used = self.used.get(node.id, [0.0, 0.0, 0.0])
        added = self.added.get(node.id, [0.0, 0.0, 0.0])
        totals = (node.cpus, node.memory_mb, node.disk_mb)
        measured = (node.free_cpus, node.free_memory_mb, node.free_disk_mb)
        out = []
        for i in range(3):
            room = totals[i] - used[i]
            if measured[i] is not None:
                room = min(room, measured[i] - added[i])
            out.append(max(room, 0.0))
        return out[0], out[1], out[2]

    def fits(self, node: Node, app: App) -> bool:
        cpus, mem, disk = self.free(node)
        return app.cpus <= cpus + 1e-9 and app.memory_mb <= mem and app.disk_mb <= disk


def plan(state: ClusterState) -> Plan:
    """Decide where every app instance runs. Same state in, same plan out."""
    nodes = {n.id: n for n in state.nodes}
    apps = {a.name: a for a in state.apps}
    room = _Room(nodes)
    out = Plan()
    placed: dict[str, dict[str, str]] = {a: {} for a in apps}  # app -> instance -> node id
    homeless: dict[tuple[str, str], Assignment] = {}
    for a in sorted(state.assignments, key=lambda a: (a.app, _slot(a.instance))):
        _keep_or_release(a, apps, nodes, room, out, placed, homeless)
    for app in sorted(apps.values(), key=lambda a: (-a.priority, a.name)):
        for kind, count in app.counts.items():
            for slot in range(count):
                inst = instance_name(kind, slot)
                if inst not in placed[app.name]:
                    _place(app, inst, homeless.get((app.name, inst)), state.now, nodes, room, out, placed)
    moved = {(p.app, p.instance) for p in out.placements}
    for app in sorted(apps.values(), key=lambda a: (-a.priority, a.name)):
        _respread(app, state.now, nodes, room, out, placed, moved)
    return out


def _respread(app: App, now: float, nodes: dict[str, Node], room: _Room, out: Plan,
              placed: dict[str, dict[str, str]], moved: set[tuple[str, str]]) -> None:
    """One move per plan, so the next death (or a site's outage) does not take every
    instance of `app`: two of them share a machine (a failover put them there) while a
    stable machine that has none of them has room; or, failing that, they are spread over
    machines but not over sites while a stable machine at a site without any has room."""
    where = placed[app.name]
    here = Counter(where.values())
    movable = sorted((inst for inst in where if (app.name, inst) not in moved), key=_slot, reverse=True)
    empty = [n for n in nodes.values() if _schedulable(n) and not _flapping(n, now) and here[n.id] == 0
             and _matches(n, app) and room.fits(n, app)]
    crowded = [inst for inst in movable if here[where[inst]] > 1]
    if crowded and empty:
        inst, what = crowded[0], "machines"
        sites = Counter(nodes[n].site for n in where.values())
        best = min(empty, key=lambda n: (sites[n.site], app.image not in n.images, -room.free(n)[1], n.name))
    else:
        # per process type: a web and a worker at one site are not two copies of one service
        kinds = Counter((process_of(i)[0], nodes[n].site) for i, n in where.items())
        moves = [(i, [n for n in empty if kinds[(process_of(i)[0], n.site)] == 0]) for i in movable
                 if kinds[(process_of(i)[0], nodes[where[i]].site)] > 1]
        inst, targets = next(((i, t) for i, t in moves if t), (None, []))
        if inst is None:
            return
        what = "sites"
        best = min(targets, key=lambda n: (app.image not in n.images, -room.free(n)[1], n.name))
    was = where[inst]
    room.take(best.id, app, new=True)
    where[inst] = best.id
    out.placements.append(Placement(app.name, inst, best.id, app.release,
                                    f"moved from {_name(nodes, was)} to {best.name}: spreading {app.name} "
                                    f"over {what} again", previous_node=was))


def _slot(instance: str) -> tuple[int, str]:
    return (int(instance), "") if instance.isdigit() else (1 << 30, instance)


def _keep_or_release(a: Assignment, apps: dict[str, App], nodes: dict[str, Node], room: _Room, out: Plan,
                     placed: dict[str, dict[str, str]], homeless: dict[tuple[str, str], Assignment]) -> None:
    app = apps.get(a.app)
    if app is None:
        out.stops.append(Stop(a.app, a.instance, a.node, f"app {a.app} was deleted"))
        return
    kind, slot = process_of(a.instance)
    if kind not in app.counts or slot is None:
        out.stops.append(Stop(a.app, a.instance, a.node, f"{a.app} has no process type {kind} any more"))
        return
    if slot >= app.counts[kind]:
        what = "" if kind == WEB else f"{kind} "
        out.stops.append(Stop(a.app, a.instance, a.node, f"scaled {what}down to {app.counts[kind]}"))
        return
    node = nodes.get(a.node)
    if node is not None and node.unreachable and app.owns_volumes and node.alive:
        room.take(node.id, app, new=False)  # it stays until the lease says the machine is gone
        placed[app.name][a.instance] = node.id
        return
    if node is None or not _schedulable(node) or not _matches(node, app) or a.instance in placed[app.name]:
        homeless[(a.app, a.instance)] = a
        return
    room.take(node.id, app, new=False)
    placed[app.name][a.instance] = node.id
    if a.release != app.release:
        out.placements.append(Placement(app.name, a.instance, node.id, app.release,
                                        f"new release {app.release} in place of {a.release}"))


def _schedulable(node: Node) -> bool:
    return node.alive and not node.drained and not node.unreachable


def _matches(node: Node, app: App) -> bool:
    return all(node.label(k) == v for k, v in app.constraints.items())


def _place(app: App, inst: str, was: Assignment | None, now: float, nodes: dict[str, Node], room: _Room,
           out: Plan, placed: dict[str, dict[str, str]]) -> None:
    candidates = [n for n in nodes.values() if _schedulable(n) and _matches(n, app) and room.fits(n, app)]
    if not candidates:
        reason = _why_pending(app, nodes, room)
        if was is not None:
            reason += f" (was on {_name(nodes, was.node)}, {_why_moved(was, app, nodes)})"
            stays = nodes.get(was.node)
            if stays is not None and stays.alive and stays.drained:  # it keeps running there meanwhile
                room.take(stays.id, app, new=False)
                placed[app.name][inst] = stays.id
        out.pending.append(Pending(app.name, inst, reason))
        return
    here = Counter(placed[app.name].values())
    sites = Counter(nodes[n].site for n in placed[app.name].values())
    best = min(candidates, key=lambda n: (
        _flapping(n, now), here[n.id], sites[n.site], app.image not in n.images, -room.free(n)[1], n.name))
    room.take(best.id, app, new=True)
    placed[app.name][inst] = best.id
    if was is None:
        reason = f"placed on {best.name}"
    else:
        reason = f"moved from {_name(nodes, was.node)} to {best.name}: {_why_moved(was, app, nodes)}"
    out.placements.append(Placement(app.name, inst, best.id, app.release, reason,
                                    previous_node=was.node if was else None))


def _flapping(node: Node, now: float) -> bool:
    return node.up_since is not None and now - node.up_since < FLAP_STABLE_AFTER_S


def _name(nodes: dict[str, Node], node_id: str) -> str:
    return nodes[node_id].name if node_id in nodes else node_id


def _why_moved(was: Assignment, app: App, nodes: dict[str, Node]) -> str:
    node = nodes.get(was.node)
    if node is None:
        return "machine left the cluster"
    if not node.alive:
        return "machine is dead"
    if node.unreachable:
        return "machine is unreachable"
    if node.drained:
        return "machine is drained"
    if not _matches(node, app):
        return "machine no longer matches " + _constraints(app)
    return "duplicate assignment"


def _constraints(app: App) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(app.constraints.items()))


def _why_pending(app: App, nodes: dict[str, Node], room: _Room) -> str:
    alive = [n for n in nodes.values() if _schedulable(n)]
    if not alive:
        live = [n for n in nodes.values() if n.alive]
        if live and all(n.drained for n in live):
            return "every live machine is drained; `vcapp node undrain NAME` takes one back"
        return "no machine is alive and reachable" if live else "no machine is alive"
    matching = [n for n in alive if _matches(n, app)]
    if not matching:
        return f"no live machine matches {_constraints(app)}; add the label to a machine or change the constraint"
    short = []
    for i, (what, need, unit) in enumerate((("CPU", app.cpus, ""), ("memory", app.memory_mb, " MB"),
                                             ("disk", app.disk_mb, " MB"))):
        best = max(matching, key=lambda n: (room.free(n)[i], n.name))
        have = room.free(best)[i]
        if need > have + (1e-9 if i == 0 else 0):
            short.append(f"needs {_num(need)}{unit} {what}; largest free is {_num(have)}{unit} on {best.name}")
    if short:
        return "; ".join(short)
    return (f"needs {_num(app.cpus)} CPU, {app.memory_mb} MB memory and {app.disk_mb} MB disk on one machine; "
            "each is free somewhere but no machine has all three: " +
            ", ".join(f"{n.name} has {_num(c)} CPU/{_num(m)} MB/{_num(d)} MB"
                      for n in sorted(matching, key=lambda n: n.name) for c, m, d in [room.free(n)]))


def _num(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) and not x.is_integer() else str(int(x))


def build_machine(state: ClusterState, cpus: float, memory_mb: int, receiver: str) -> tuple[str, str]:
    """Where a build of `cpus`/`memory_mb` runs, and why: on the receiver of the push if it
    has that much unbooked by what runs there (it has the source, and likely the stack and
    layer cache), else on the live machine with the most CPU left (then memory). CPU is
    compressible: when no machine has the room, the build runs on the receiver anyway
    (slower), and the reason says so."""
    nodes = {n.id: n for n in state.nodes}
    apps = {a.name: a for a in state.apps}
    room = _Room(nodes)
    for a in state.assignments:
        if a.node in nodes and a.app in apps:
            room.take(a.node, apps[a.app], new=False)
    fits = [n for n in nodes.values()
            if n.alive and room.free(n)[0] + 1e-9 >= cpus and room.free(n)[1] >= memory_mb]
    if not fits:
        return receiver, (f"no machine has {_num(cpus)} CPUs and {memory_mb} MB unbooked; "
                          f"building where the push arrived")
    if any(n.id == receiver for n in fits):
        return receiver, "room here"
    best = max(fits, key=lambda n: (round(room.free(n)[0], 3), room.free(n)[1], n.name))
    cpu_left, mem_left = room.free(best)[:2]
    return best.id, f"most room: {_num(cpu_left)} CPUs, {_num(mem_left)} MB unbooked on {best.name}"
