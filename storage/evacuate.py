"""Moving every volume copy off one machine (a storage drain), so it can go away without
leaving the data short of a copy.

SeaweedFS's own `volumeServer.evacuate` moves each copy to a machine that holds none of
that volume and fits its replication code (dataCenter = site, rack = machine); a copy with
no such machine stays (`-skipNonMoveable`) and is counted. The caller keeps the machine's
volume server running until nothing is left on it, then plans none there
(ClusterPlan.volume_off), so the masters place no new volume on it.
"""

from __future__ import annotations

from storage import replication, shell
from storage.host import Host
from storage.plan import VOLUME_PORT, ClusterPlan


def volume_server(plan: ClusterPlan, name: str) -> str:
    """host:port of machine `name`'s volume server, as volume.list names it."""
    return f"{plan.machine(name).addr}:{VOLUME_PORT}"


def copies_on(copies: list[dict], server: str) -> list[int]:
    """Ids of the volumes with a copy on `server` (pure)."""
    return sorted({c["id"] for c in copies if c["node"] == server})


def room_for(sites_left: list[str], copies: int = replication.TARGET_COPIES) -> bool:
    """Can the machines left (one site per machine) keep `copies` copies of every volume
    (pure)? Evacuating a machine when they cannot would leave its volumes a copy short."""
    return bool(sites_left) and replication.copies(replication.choose_code(sites_left)) >= copies


def evacuate(plan: ClusterPlan, host: Host, name: str, weed: str) -> list[int]:
    """Move the copies on machine `name` to others; the ids of those still on it after."""
    server = volume_server(plan, name)
    if not copies_on(shell.volume_copies(plan, host, weed), server):
        return []
    shell.run(plan, host, [f"volumeServer.evacuate -node={server} -skipNonMoveable -apply"], weed)
    return copies_on(shell.volume_copies(plan, host, weed), server)
