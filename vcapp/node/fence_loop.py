"""Node loop: keep this machine's control-plane fence (runtime/firewall.py) in step with the
cluster's members.

Observe: the member machines' addresses (/vc/nodes/*). Decide: the Fence those give, with
the ports of this project that only machines use. Act: load it when it differs from what was
loaded, or when the table is gone (anything that flushes nftables), checked every
VERIFY_EVERY_S. The fence goes up on the daemon's first tick, before any container of this
machine is started by the runtime loop that follows it.
"""

from __future__ import annotations

import ipaddress
import logging

from builder.registry import DEFAULT_PORT as REGISTRY_PORT
from mesh.edge import MESH_CIDR
from runtime import firewall
from runtime.shell import LocalShell
from storage.plan import FILER_PORT, MASTER_PORT, S3_PORT, VOLUME_PORT
from vcapp.machine import ETCD_CLIENT_PORT, ETCD_PEER_PORT
from vcapp.node.harness import Every
from vcapp.state import membership
from vcapp.state.store import StoreUnavailable
from vcapp.views import ingress

log = logging.getLogger("vcapp.fence")

# SeaweedFS serves gRPC on each HTTP port + 10000.
WEED_GRPC_OFFSET = 10000
WEED_PORTS = (MASTER_PORT, VOLUME_PORT, FILER_PORT, S3_PORT)
# Reached by machines only: never by an edge or any other peer of the mesh, never by a
# container. The API and the node router stay open to the edges (routes, joins, requests).
MACHINE_ONLY_PORTS = (ETCD_CLIENT_PORT, ETCD_PEER_PORT, REGISTRY_PORT, ingress.NODE_HOP_PORT,
                      *WEED_PORTS, *(p + WEED_GRPC_OFFSET for p in WEED_PORTS))
# What a container may open on its own machine: the S3 gateway of its app's bucket.
CONTAINER_PORTS = (S3_PORT,)
# A flushed ruleset is noticed and the fence loaded again within this long.
VERIFY_EVERY_S = 5.0


def desired(records: dict[str, dict]) -> firewall.Fence:
    """The fence from the member machines' records (pure)."""
    machines = [r["addr"] for r in records.values() if isinstance(r, dict) and _ipv4(r.get("addr"))]
    return firewall.Fence.build(MESH_CIDR, machines, CONTAINER_PORTS, MACHINE_ONLY_PORTS)


def _ipv4(addr) -> bool:
    try:
        return ipaddress.ip_address(str(addr or "")).version == 4
    except ValueError:
        return False


class FenceLoop:
    name = "fence"

    def __init__(self, ctx) -> None:
        self.shell = LocalShell()
        self.loaded: firewall.Fence | None = None
        self.verify = Every(VERIFY_EVERY_S)  # begun by each load and each check that finds it

    def step(self, ctx) -> None:
        try:
            records = membership.node_records(ctx.store)
        except StoreUnavailable:
            if self.loaded is None:  # containers are fenced at once; the mesh rule waits for the members
                self._load(desired({}))
            raise
        if ctx.cfg.addr and ctx.cfg.name not in records:
            records[ctx.cfg.name] = {"addr": ctx.cfg.addr}  # our own, before the record lands
        fence = desired(records)
        if fence == self.loaded and not self.verify.ready():
            return
        if fence == self.loaded and firewall.present(self.shell):
            self.verify.mark()
            return
        if self.loaded is None or fence.machines != self.loaded.machines:
            log.info("control-plane fence: %d machine(s) may reach the machine-only ports", len(fence.machines))
        self._load(fence)

    def _load(self, fence: firewall.Fence) -> None:
        firewall.apply(self.shell, fence)
        self.loaded = fence
        self.verify.mark()
