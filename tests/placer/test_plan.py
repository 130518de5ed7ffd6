"""Placement tables: machines and apps in, the plan a human would expect out."""

from __future__ import annotations

import pytest

from placer.model import App, Assignment, ClusterState, Node, Placement
from placer.plan import FLAP_STABLE_AFTER_S, plan

pytestmark = pytest.mark.unit

NOW = 1_000_000.0


def node(name: str, cpus: float = 4, mem: int = 4096, disk: int = 50_000, site: str | None = None,
         alive: bool = True, up: float | None = None, images: tuple[str, ...] = (), **labels: str) -> Node:
    return Node(id=name, name=name, site=site or name.split("-")[0], cpus=cpus, memory_mb=mem, disk_mb=disk,
                labels=labels, alive=alive, up_since=up, images=frozenset(images))


def app(name: str, count: int = 1, cpus: float = 0.5, mem: int = 256, disk: int = 0, prio: int = 0,
        release: int = 1, **constraints: str) -> App:
    image = f"localhost/{name}:{release}"
    return App(name=name, count=count, cpus=cpus, memory_mb=mem, disk_mb=disk, priority=prio,
               constraints=constraints, release=release, image=image,
               spec={"release": release, "image": image, "port": 8080, "cpus": cpus, "memory_mb": mem})


def assigned(a: App, instance: str, node_id: str, release: int = 1) -> Assignment:
    return Assignment(app=a.name, instance=instance, node=node_id, release=release, cpus=a.cpus,
                      memory_mb=a.memory_mb, disk_mb=a.disk_mb)


def run(nodes, apps, assignments=()):
    return plan(ClusterState(nodes=list(nodes), apps=list(apps), assignments=list(assignments), now=NOW))


THREE = [node("home-1"), node("home-2"), node("office-1")]

# (case id, machines, apps, current assignments, expected {app: {instance: node}}, expected pending apps)
PLACE_TABLE = [
    ("one app lands somewhere", THREE, [app("web")], [], {"web": 1}, []),
    ("spread across machines then sites", THREE, [app("web", count=2)], [],
     {"web": {"0": "home-1", "1": "office-1"}}, []),
    ("three instances take three machines", THREE, [app("web", count=3)], [],
     {"web": {"0": "home-1", "1": "office-1", "2": "home-2"}}, []),
    ("site constraint", THREE, [app("web", count=2, site="office")], [],
     {"web": {"0": "office-1", "1": "office-1"}}, []),
    ("label constraint", [node("home-1"), node("home-2", gpu="true"), node("office-1")],
     [app("ml", gpu="true")], [], {"ml": {"0": "home-2"}}, []),
    ("memory goes where it is free", [node("home-1", mem=512), node("office-1", mem=4096)],
     [app("db", mem=1024)], [], {"db": {"0": "office-1"}}, []),
    ("cpu goes where it is free", [node("home-1", cpus=1), node("office-1", cpus=8, mem=1024)],
     [app("calc", cpus=2, mem=100)], [], {"calc": {"0": "office-1"}}, []),
    ("disk goes where it is free", [node("home-1", disk=100), node("office-1", disk=10_000, mem=1024)],
     [app("store", disk=5000)], [], {"store": {"0": "office-1"}}, []),
    ("image already there wins", [node("home-1"), node("home-2", images=("localhost/web:1",))],
     [app("web")], [], {"web": {"0": "home-2"}}, []),
    ("dead machines get nothing", [node("home-1", alive=False), node("office-1")],
     [app("web", count=2)], [], {"web": {"0": "office-1", "1": "office-1"}}, []),
    ("flapping machine avoided while a stable one has room",
     [node("home-1", up=NOW - 5), node("home-2", up=NOW - FLAP_STABLE_AFTER_S - 1)],
     [app("web", count=2)], [], {"web": {"0": "home-2", "1": "home-2"}}, []),
    ("flapping machine used when nothing else fits",
     [node("home-1", up=NOW - 5), node("home-2", mem=300, up=NOW - 10_000)],
     [app("web", count=2)], [], {"web": {"0": "home-2", "1": "home-1"}}, []),
    ("three apps on three different machines",
     [node("home-1", cpus=1, mem=600), node("home-2", cpus=2, mem=2048), node("office-1", cpus=8, mem=6400)],
     [app("small", cpus=1, mem=512), app("mid", cpus=2, mem=2000), app("big", cpus=6, mem=6000)], [],
     {"big": {"0": "office-1"}, "mid": {"0": "home-2"}, "small": {"0": "home-1"}}, []),
]


@pytest.mark.parametrize("case,nodes,apps,current,expected,pending", PLACE_TABLE, ids=[c[0] for c in PLACE_TABLE])
def test_placement_table(case, nodes, apps, current, expected, pending):
    p = run(nodes, apps, current)
    for name, want in expected.items():
        got = p.where(name)
        if isinstance(want, int):
            assert len(got) == want
        else:
            assert got == want, f"{case}: {name} placed {got}"
    assert sorted({x.app for x in p.pending}) == pending


def test_memory_is_never_overcommitted():
    # 10 instances of 400 MB on two 1 GB machines: only 4 fit (2 each), 6 pend.
    p = run([node("home-1", mem=1024), node("office-1", mem=1024)], [app("web", count=10, mem=400, cpus=0.1)])
    per_node = {}
    for pl in p.placements:
        per_node[pl.node] = per_node.get(pl.node, 0) + 400
    assert per_node == {"home-1": 800, "office-1": 800}
    assert len(p.pending) == 6


def test_measured_free_memory_caps_room():
    # The machine has 4 GB but reports only 300 MB free (something else eats memory).
    n = Node(id="home-1", name="home-1", site="home", cpus=4, memory_mb=4096, disk_mb=1000, free_memory_mb=300)
    p = run([n], [app("web", mem=256), app("other", mem=256)])
    assert len(p.placements) == 1 and len(p.pending) == 1
    assert "largest free is 44 MB on home-1" in p.pending[0].reason


PENDING_TABLE = [
    ("memory too big", [node("home-1", mem=1024), node("office-1", mem=1200)], app("db", mem=2048),
     "needs 2048 MB memory; largest free is 1200 MB on office-1"),
    ("cpu too big", [node("home-1", cpus=2), node("office-1", cpus=1)], app("calc", cpus=3),
     "needs 3 CPU; largest free is 2 on home-1"),
    ("disk too big", [node("home-1", disk=500)], app("store", disk=800),
     "needs 800 MB disk; largest free is 500 MB on home-1"),
    ("no machine with the label", THREE, app("ml", gpu="true"),
     "no live machine matches gpu=true; add the label to a machine or change the constraint"),
    ("site constraint limits room", [node("home-1", mem=8000), node("office-1", mem=500)],
     app("db", mem=1000, site="office"), "needs 1000 MB memory; largest free is 500 MB on office-1"),
    ("nothing alive", [node("home-1", alive=False)], app("web"), "no machine is alive"),
    ("no single machine has all", [node("home-1", cpus=4, mem=100), node("office-1", cpus=0.5, mem=4096)],
     app("web", cpus=1, mem=1000), "no machine has all three"),
]


@pytest.mark.parametrize("case,nodes,the_app,reason", PENDING_TABLE, ids=[c[0] for c in PENDING_TABLE])
def test_pending_reason_table(case, nodes, the_app, reason):
    p = run(nodes, [the_app])
    assert p.placements == []
    assert len(p.pending) == the_app.count
    assert reason in p.pending[0].reason, p.pending[0].reason


def test_healthy_placements_stay_put():
    web = app("web", count=2)
    # A new, emptier machine joined; the current placements are fine (two machines, two
    # sites), so nothing moves.
    nodes = THREE + [node("office-2", mem=65536, images=("localhost/web:1",))]
    p = run(nodes, [web], [assigned(web, "0", "home-1"), assigned(web, "1", "office-1")])
    assert p.placements == [] and p.stops == [] and p.pending == []


def test_instances_move_off_a_dead_machine():
    web = app("web", count=2)
    nodes = [node("home-1", alive=False), node("home-2"), node("office-1")]
    p = run(nodes, [web], [assigned(web, "0", "home-1"), assigned(web, "1", "home-2")])
    assert p.where("web") == {"0": "office-1"}  # home-2 keeps instance 1; 0 spreads to the office
    moved = p.placements[0]
    assert moved.previous_node == "home-1" and "machine is dead" in moved.reason


def test_instances_move_off_a_drained_machine_and_nothing_new_goes_there():
    web, api = app("web", count=2), app("api")
    nodes = [Node(**{**node("home-1").__dict__, "drained": True}), node("home-2"), node("office-1")]
    p = run(nodes, [web, api], [assigned(web, "0", "home-1"), assigned(web, "1", "home-2")])
    assert p.where("web") == {"0": "office-1"} and p.where("api") == {"0": "office-1"}
    moved = next(m for m in p.placements if m.app == "web")
    assert moved.previous_node == "home-1" and "machine is drained" in moved.reason


def test_a_drained_machine_keeps_what_fits_nowhere_else_and_says_how_to_undrain():
    db = app("db", mem=3000)
    drained = Node(**{**node("home-1").__dict__, "drained": True})
    p = run([drained, node("office-1", mem=1000)], [db], [assigned(db, "0", "home-1")])
    assert p.placements == [] and p.stops == []
    assert p.pending[0].reason.endswith("(was on home-1, machine is drained)")
    p = run([drained], [app("new")])
    assert p.pending[0].reason == "every live machine is drained; `vcapp node undrain NAME` takes one back"


def test_an_unreachable_machine_loses_its_stateless_instances_but_keeps_those_with_volumes():
    web = app("web")
    db = App(**{**app("db").__dict__, "spec": {**app("db").spec, "volumes": [{"source": "data"}]}})
    gone = Node(**{**node("home-1").__dict__, "unreachable": True})
    p = run([gone, node("home-2")], [web, db, app("new")],
            [assigned(web, "0", "home-1"), assigned(db, "0", "home-1")])
    assert p.where("web") == {"0": "home-2"} and p.where("new") == {"0": "home-2"}
    assert p.where("db") == {} and p.pending == []
    moved = next(m for m in p.placements if m.app == "web")
    assert moved.previous_node == "home-1" and "machine is unreachable" in moved.reason


def test_dead_machine_without_room_elsewhere_is_pending_with_history():
    db = app("db", mem=3000)
    p = run([node("home-1", alive=False), node("office-1", mem=1000)], [db], [assigned(db, "0", "home-1")])
    assert p.placements == []
    assert p.pending[0].reason == ("needs 3000 MB memory; largest free is 1000 MB on office-1 "
                                   "(was on home-1, machine is dead)")


def test_higher_priority_first_when_room_is_short():
    # Two machines died at once; the survivor has room for one of the two apps.
    crit, toy = app("billing", mem=700, prio=100), app("toy", mem=700, prio=1)
    nodes = [node("home-1", alive=False), node("home-2", alive=False), node("office-1", mem=1024)]
    p = run(nodes, [toy, crit], [assigned(toy, "0", "home-1"), assigned(crit, "0", "home-2")])
    assert p.where("billing") == {"0": "office-1"}
    assert [x.app for x in p.pending] == ["toy"]


def test_running_low_priority_is_not_preempted():
    crit, toy = app("billing", mem=700, prio=100), app("toy", mem=700, prio=1)
    p = run([node("office-1", mem=1024)], [toy, crit], [assigned(toy, "0", "office-1")])
    assert p.placements == [] and [x.app for x in p.pending] == ["billing"]


def test_scale_down_and_deleted_app_stop():
    web, gone = app("web", count=1), app("gone")
    p = run(THREE, [web], [assigned(web, "0", "home-1"), assigned(web, "1", "home-2"),
                           assigned(gone, "0", "office-1")])
    assert {(s.app, s.instance, s.reason) for s in p.stops} == {
        ("web", "1", "scaled down to 1"), ("gone", "0", "app gone was deleted")}
    assert p.placements == []


def test_scale_up_adds_on_other_machines_without_moving_existing():
    web = app("web", count=3)
    p = run(THREE, [web], [assigned(web, "0", "home-1")])
    assert p.where("web") == {"1": "office-1", "2": "home-2"}


def test_new_release_rolls_out_in_place():
    web = app("web", count=2, release=2)
    p = run(THREE, [web], [assigned(web, "0", "home-1", release=1), assigned(web, "1", "office-1", release=1)])
    assert [(x.instance, x.node, x.release) for x in p.placements] == [("0", "home-1", 2), ("1", "office-1", 2)]


def test_constraint_change_moves_instance():
    web = app("web", site="office")
    p = run(THREE, [web], [assigned(web, "0", "home-1")])
    assert p.where("web") == {"0": "office-1"}
    assert "no longer matches site=office" in p.placements[0].reason


def test_existing_placements_consume_room():
    big = app("big", mem=3000)
    p = run([node("home-1", mem=4096)], [big, app("web", mem=2000)], [assigned(big, "0", "home-1")])
    assert p.pending[0].reason.startswith("needs 2000 MB memory; largest free is 1096 MB on home-1")


def test_same_state_gives_same_plan():
    nodes, apps = THREE, [app("a", count=2), app("b", count=3, mem=900), app("c", prio=5)]
    assert run(nodes, apps) == run(list(reversed(nodes)), list(reversed(apps)))


def test_assignment_json_carries_runtime_fields():
    web = app("web")
    p = run(THREE, [web])
    rec = p.placements[0].to_json(web)
    assert rec["app"] == "web" and rec["instance"] == "0" and rec["node"] == "home-1"
    assert rec["image"] == "localhost/web:1" and rec["port"] == 8080 and rec["memory_mb"] == 256


def test_state_from_etcd_json():
    st = ClusterState.from_json(
        nodes={"n1": {"name": "home-1", "site": "home", "cpus": 2, "memory_mb": 2048, "disk_mb": 1000,
                      "labels": {"gpu": True}},
               "n2": {"name": "office-1", "site": "office", "cpus": 2, "memory_mb": 2048, "disk_mb": 1000}},
        alive={"n1": NOW - 3600},
        apps={"ml": {"count": 1, "cpus": 1, "memory_mb": 512, "constraints": {"gpu": "true"}, "image": "x"}},
        assignments=[], now=NOW)
    p = plan(st)
    assert p.placements == [Placement("ml", "0", "n1", None, "placed on home-1")]


# ---- where a build runs -------------------------------------------------------------------

def build_on(nodes, apps=(), assignments=(), cpus=1.0, mem=1024, receiver="home-1"):
    from placer.plan import build_machine
    return build_machine(ClusterState(nodes=list(nodes), apps=list(apps), assignments=list(assignments), now=NOW),
                         cpus, mem, receiver)


def test_a_build_runs_where_the_push_arrived_when_that_machine_has_the_room():
    assert build_on(THREE) == ("home-1", "room here")
    assert build_on(THREE, receiver="office-1")[0] == "office-1"
    some = app("some", cpus=2)  # home-1 keeps 2 CPUs: enough, though others have more
    assert build_on(THREE, [some], [assigned(some, "0", "home-1")])[0] == "home-1"


def test_a_build_goes_to_the_machine_with_the_most_unbooked_cpu_not_the_busy_receiver():
    busy, other = app("busy", cpus=3.5), app("other", cpus=1)
    where, why = build_on(THREE, [busy, other], [assigned(busy, "0", "home-1"), assigned(other, "0", "home-2")])
    assert where == "office-1" and why == "most room: 4 CPUs, 4096 MB unbooked on office-1"


def test_a_build_skips_dead_machines_and_those_short_of_memory():
    nodes = [node("home-1", cpus=1), node("home-2", alive=False), node("office-1", mem=512)]
    hog = app("hog", cpus=0.5)
    assert build_on(nodes, [hog], [assigned(hog, "0", "home-1")], cpus=0.5)[0] == "home-1"
    where, why = build_on(nodes, [hog], [assigned(hog, "0", "home-1")], cpus=1.0)
    assert where == "home-1" and why.startswith("no machine has 1 CPUs and 1024 MB unbooked")


# ---- spreading again after a failover -----------------------------------------------------

def test_instances_crowded_on_one_machine_spread_again_once_another_is_stable():
    web = app("web", count=2)
    crowded = [assigned(web, "0", "home-1"), assigned(web, "1", "home-1")]
    nodes = [node("home-1", up=NOW - 3600), node("home-2", up=NOW - FLAP_STABLE_AFTER_S - 1)]
    result = run(nodes, [web], crowded)
    [move] = result.placements
    assert (move.instance, move.node, move.previous_node) == ("1", "home-2", "home-1")
    assert move.reason == "moved from home-1 to home-2: spreading web over machines again"
    assert not result.stops and not result.pending


def test_instances_at_one_site_spread_to_another_once_a_machine_there_is_stable():
    """A failover while office-1 was cut off put both web instances at home: once office-1 is
    stable again one moves there (handed over), so a power cut at home leaves one serving."""
    web = app("web", count=2)
    at_home = [assigned(web, "0", "home-1"), assigned(web, "1", "home-2")]
    nodes = [node("home-1", up=NOW - 3600), node("home-2", up=NOW - 3600), node("office-1", up=NOW - 3600)]
    [move] = run(nodes, [web], at_home).placements
    assert (move.instance, move.node, move.previous_node) == ("1", "office-1", "home-2")
    assert move.reason == "moved from home-2 to office-1: spreading web over sites again"
    # not before office-1 has been back for FLAP_STABLE_AFTER_S, nor where it has no room
    just_back = [*nodes[:2], node("office-1", up=NOW - 10)]
    assert run(just_back, [web], at_home).placements == []
    full = [*nodes[:2], node("office-1", mem=128, up=NOW - 3600)]
    assert run(full, [web], at_home).placements == []
    # nor against the app's own constraint, nor for one instance of each process type
    pinned = app("web", count=2, site="home")
    assert run(nodes, [pinned], [assigned(pinned, "0", "home-1"), assigned(pinned, "1", "home-2")]).placements == []
    alone = app("web")
    assert run(nodes, [alone], [assigned(alone, "0", "home-1")]).placements == []
    # and a spread that is already over sites stays: three instances, two sites
    three = app("web", count=3)
    spread = [assigned(three, "0", "home-1"), assigned(three, "1", "home-2"), assigned(three, "2", "office-1")]
    assert run(nodes, [three], spread).placements == []


def test_no_respreading_onto_a_machine_that_just_came_back_or_has_no_room():
    web = app("web", count=2, mem=1024)
    crowded = [assigned(web, "0", "home-1"), assigned(web, "1", "home-1")]
    just_back = [node("home-1", up=NOW - 3600), node("home-2", up=NOW - 10)]
    assert run(just_back, [web], crowded).placements == []
    full = [node("home-1", up=NOW - 3600), node("home-2", mem=512, up=NOW - 3600)]
    assert run(full, [web], crowded).placements == []
    one_move_per_plan = app("web", count=3)
    three = [assigned(one_move_per_plan, str(i), "home-1") for i in range(3)]
    nodes = [node("home-1", up=NOW - 3600), node("home-2", up=NOW - 3600), node("office-1", up=NOW - 3600)]
    assert len(run(nodes, [one_move_per_plan], three).placements) == 1
