"""Tests of vcapp on a simulated cluster (vcapp/dev/rigs/control.py): the node daemon as a boot
service on every machine, `vcapp cluster init` on the first, `vcapp node join` on the rest."""

from __future__ import annotations

from vcapp.dev.rigs.control import TEST_REPLACE_AFTER, ControlCluster, start_machines

__all__ = ["TEST_REPLACE_AFTER", "ControlCluster", "start_machines", "three_machines"]


def three_machines(make_sim, tmp_path_factory, labels: dict[str, str] | None = None) -> ControlCluster:
    """Three machines on one LAN (home-1..3) running vcapp (see start_machines)."""
    return start_machines(make_sim(home=3, office=0), tmp_path_factory.mktemp("tiny"), labels)
