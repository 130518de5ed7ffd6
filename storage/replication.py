"""Choice of SeaweedFS replication codes from the machines that are alive.

A SeaweedFS replication code "xyz" asks for x copies in other data centers, y copies on
other racks of the primary's data center and z copies on other servers of the primary's
rack, so a volume has x+y+z+1 copies. vcapp maps a site to a data center and a machine to
a rack (one volume server per machine), so z is always 0 and every copy is on its own
machine. Writes go to every copy (W=N): a code must be satisfiable by the machines alive
now, or new writes fail. Pure functions, no I/O.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

TARGET_COPIES = 3  # survive any one machine dying while keeping two copies


class ReplicationError(ValueError):
    """No replication code fits the machines given; the message says what is missing."""


def copies(code: str) -> int:
    """How many copies a replication code keeps ("010" -> 2)."""
    if len(code) != 3 or not code.isdigit():
        raise ReplicationError(f"replication code {code!r} is not three digits like '010'")
    return 1 + sum(int(d) for d in code)


def feasible(code: str, sites: Iterable[str]) -> bool:
    """Can machines at these sites (one entry per live machine) hold every copy of `code`?"""
    x, y, z = (int(d) for d in code)
    per_site = Counter(sites)
    if z:
        return False  # one volume server per machine: no two copies share a rack
    for primary, racks in per_site.items():
        others = sum(1 for s in per_site if s != primary)
        if racks >= y + 1 and others >= x:
            return True
    return False


def choose_code(sites: Iterable[str], target: int = TARGET_COPIES) -> str:
    """The code for new writes given the site of each live machine.

    As many copies as there are live machines, up to `target`; among codes with that many
    copies, the one spreading over the most sites (a site can lose power or its uplink as
    a whole). Raises when no machine is alive."""
    live = list(sites)
    if not live:
        raise ReplicationError("no storage machine is alive: nothing can be written; revive a machine")
    want = min(target, len(live))
    for x in range(want - 1, -1, -1):
        code = f"{x}{want - 1 - x}0"
        if feasible(code, live):
            return code
    raise ReplicationError(f"no placement of {want} copies over sites {sorted(set(live))}")  # unreachable


def state(code: str, target: int = TARGET_COPIES) -> str:
    """'healthy' when a code keeps the target number of copies, else 'degraded'."""
    return "healthy" if copies(code) >= target else "degraded"
