"""The reconcile loops the node daemon runs, in order, on every tick.

Each entry is a factory `f(ctx: NodeContext) -> Loop` (a class is fine). Node loops run on
every machine; leader loops only on the machine holding the controller election.
"""

from __future__ import annotations


def node_loops() -> list:
    return []


def leader_loops() -> list:
    return []
