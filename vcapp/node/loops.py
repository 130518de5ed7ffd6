"""The reconcile loops the node daemon runs, in order, on every tick.

Each entry is a factory `f(ctx: NodeContext) -> Loop` (a class is fine). Node loops run on
every machine; leader loops only on the machine holding the controller election. A loop's
own code observes, decides and acts; its throttles, threads, retries and error memory are
vcapp/node/harness.py's.
"""

from __future__ import annotations

from vcapp.node.backup_loop import BackupLoop
from vcapp.node.crl_loop import CrlLoop
from vcapp.node.defrag_loop import DefragLoop
from vcapp.node.fence_loop import FenceLoop
from vcapp.node.meshpath_loop import MeshPathLoop
from vcapp.node.metrics_loop import MetricsLoop
from vcapp.node.peerwatch_loop import PeerWatchLoop
from vcapp.node.placer_loop import PlacerLoop
from vcapp.node.registry_loop import RegistryLoop
from vcapp.node.repos_loop import RepoSyncLoop
from vcapp.node.router_loop import RouterLoop
from vcapp.node.runtime_loop import RuntimeLoop
from vcapp.node.storage_loop import ReplicationLoop, StorageLoop


def node_loops() -> list:
    return [FenceLoop, CrlLoop, RegistryLoop, StorageLoop, RuntimeLoop, RouterLoop, PeerWatchLoop, MeshPathLoop,
            RepoSyncLoop, DefragLoop]


def leader_loops() -> list:
    return [PlacerLoop, MetricsLoop, ReplicationLoop, BackupLoop]
