"""What the admin API needs to run: a way to reach the cluster store, and who is serving."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from vcapp.errors import Unavailable
from vcapp.store import Store


@dataclass(frozen=True)
class ApiConfig:
    """`store` returns a Store for the calling thread; `node` names the machine serving;
    `cluster_key` reads the cluster's secret key (handed to joining machines), None if absent."""

    store: Callable[[], Store]
    node: str
    cluster_key: Callable[[], bytes] | None = None

    @classmethod
    def for_endpoints(cls, endpoints: list[str], node: str,
                      cluster_key: Callable[[], bytes] | None = None) -> ApiConfig:
        return cls(store=per_thread_store(endpoints), node=node, cluster_key=cluster_key)

    @classmethod
    def from_node_config(cls) -> ApiConfig:
        """This machine's API: etcd endpoints and name from its node.json."""
        from vcapp.node.config import NodeConfig, cluster_key, config_path

        node_config = NodeConfig.load()
        if node_config is None:
            raise Unavailable(f"no node configuration at {config_path()}; this machine is not in a cluster yet "
                              "(`vcapp cluster init` or `vcapp node join TOKEN`)")
        return cls.for_endpoints(node_config.store_endpoints(), node_config.name, cluster_key)


def per_thread_store(endpoints: list[str]) -> Callable[[], Store]:
    """A factory giving each thread its own Store (and HTTP connections), reused across requests.

    A Store reorders its endpoints when one fails and holds a requests session, neither of
    which is meant to be shared between the server's threads.
    """
    local = threading.local()

    def store() -> Store:
        if getattr(local, "store", None) is None:
            local.store = Store(endpoints)
        return local.store

    return store
