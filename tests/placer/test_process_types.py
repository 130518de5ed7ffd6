"""Process types (web, worker, ...) as placement tables: each type has its own count and slots,
is placed and failed over like web, and a worker's assignment carries its own command, no
port and no HTTP check."""

from __future__ import annotations

import pytest

from placer.model import App, Assignment, ClusterState, Node, instance_name, process_of
from placer.plan import plan

pytestmark = pytest.mark.unit

NOW = 1_000_000.0
WORKER_CMD = ["sh", "-c", "exec python worker.py"]


def node(name: str, alive: bool = True, mem: int = 4096) -> Node:
    return Node(id=name, name=name, site=name.split("-")[0], cpus=4, memory_mb=mem, disk_mb=50_000, alive=alive)


def app(name: str = "shop", web: int = 1, release: int = 1, **procs: int) -> App:
    spec = {"release": release, "image": f"localhost/{name}:{release}", "port": 8080, "cpus": 0.5,
            "memory_mb": 256, "count": web, "command": ["sh", "-c", "exec web"],
            "health": {"type": "http", "path": "/"},
            "processes": {k: {"count": n, "command": WORKER_CMD} for k, n in procs.items()}}
    return App.from_json(name, spec)


def on(a: App, instance: str, node_id: str, release: int = 1) -> Assignment:
    return Assignment(app=a.name, instance=instance, node=node_id, release=release, cpus=0.5, memory_mb=256)


def run(nodes, apps, assignments=()):
    return plan(ClusterState(nodes=list(nodes), apps=list(apps), assignments=list(assignments), now=NOW))


THREE = [node("home-1"), node("home-2"), node("office-1")]
SHOP = app(web=1, worker=1)

# (case, machines, app, current assignments, expected placements {instance: node}, expected stops)
TABLE = [
    ("web and worker spread over machines", THREE, SHOP, [], {"0": "home-1", "worker-0": "office-1"}, []),
    ("two workers, one web", THREE, app(web=1, worker=2), [],
     {"0": "home-1", "worker-0": "office-1", "worker-1": "home-2"}, []),
    ("a clock beside the worker", THREE, app(web=1, worker=1, clock=1), [],
     {"0": "home-1", "clock-0": "office-1", "worker-0": "home-2"}, []),
    ("only workers (web scaled to 0)", THREE, app(web=0, worker=1), [], {"worker-0": "home-1"}, []),
    ("running worker is kept", THREE, SHOP, [on(SHOP, "0", "home-1"), on(SHOP, "worker-0", "home-2")], {}, []),
    ("worker on a dead machine moves", [node("home-1"), node("home-2", alive=False), node("office-1")], SHOP,
     [on(SHOP, "0", "home-1"), on(SHOP, "worker-0", "home-2")], {"worker-0": "office-1"}, []),
    ("worker scaled down stops its top slot", THREE, app(web=1, worker=1),
     [on(SHOP, "0", "home-1"), on(SHOP, "worker-0", "home-2"), on(SHOP, "worker-1", "office-1")], {},
     [("worker-1", "scaled worker down to 1")]),
    ("a type gone from the Procfile stops", THREE, app(web=1),
     [on(SHOP, "0", "home-1"), on(SHOP, "worker-0", "home-2")], {},
     [("worker-0", "shop has no process type worker any more")]),
    ("web scale down leaves workers", THREE, app(web=1, worker=1),
     [on(SHOP, "0", "home-1"), on(SHOP, "1", "office-1"), on(SHOP, "worker-0", "home-2")], {},
     [("1", "scaled down to 1")]),
    ("new release rolls workers in place", THREE, app(release=2, worker=1),
     [on(SHOP, "0", "home-1"), on(SHOP, "worker-0", "home-2")], {"0": "home-1", "worker-0": "home-2"}, []),
]


@pytest.mark.parametrize("case,nodes,a,current,expected,stops", TABLE, ids=[c[0] for c in TABLE])
def test_typed_placement_table(case, nodes, a, current, expected, stops):
    p = run(nodes, [a], current)
    assert p.where(a.name) == expected
    assert sorted((s.instance, s.reason) for s in p.stops) == sorted(stops)
    assert not p.pending


def test_worker_assignment_has_its_command_and_no_port_or_http_check():
    p = run(THREE, [SHOP])
    recs = {pl.instance: pl.to_json(SHOP) for pl in p.placements}
    assert recs["worker-0"]["command"] == WORKER_CMD
    assert recs["worker-0"]["process"] == "worker"
    assert recs["worker-0"]["health"] == {"type": "none"}
    assert "port" not in recs["worker-0"]
    assert recs["0"]["port"] == 8080 and recs["0"]["health"]["type"] == "http" and "process" not in recs["0"]
    assert recs["0"]["command"] == ["sh", "-c", "exec web"]


def test_worker_pending_says_why():
    p = run([node("home-1", mem=300)], [app(web=1, worker=1)])
    assert p.where("shop") == {"0": "home-1"}
    assert [(x.instance, x.reason) for x in p.pending] == [
        ("worker-0", "needs 256 MB memory; largest free is 44 MB on home-1")]


@pytest.mark.parametrize("name,kind,slot", [("0", "web", 0), ("12", "web", 12), ("worker-0", "worker", 0),
                                           ("my-queue-3", "my-queue", 3), ("odd", "odd", None)])
def test_instance_names_round_trip(name, kind, slot):
    assert process_of(name) == (kind, slot)
    if slot is not None:
        assert instance_name(kind, slot) == name
