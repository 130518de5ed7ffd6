"""Fixtures for mesh tests: a simulated cluster with the edge and every machine in the mesh.

`mesh` (module scope) brings up the default topology (home-1, home-2 behind the home NAT,
office-1 behind the office NAT), starts `vcapp mesh edge` on the edge and `vcapp mesh up`
on each machine exactly as the control plane would, and gives tests a `Mesh` to read each
machine's status and wait for paths (vcapp/dev/rigs/mesh.py, which also says why the
simulated routers drop unsolicited UDP to themselves)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh import auth
from vcapp.dev.rigs.mesh import MACHINES, VCAPP, Mesh, realistic_router_input

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
__all__ = ["MACHINES", "VCAPP", "Mesh"]


@pytest.fixture(scope="module")
def mesh(make_sim):
    sim = make_sim()
    realistic_router_input(sim)
    m = Mesh(sim, auth.new_mesh_key(), ARTIFACTS / f"mesh-{sim.name}")
    m.start_edge()
    for host in MACHINES:
        m.start_machine(host)
    m.settle(timeout=60)
    yield m
    m.forget_sockets()
