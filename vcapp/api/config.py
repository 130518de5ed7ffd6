"""What the admin API needs to run: a way to reach the cluster store, and who is serving."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from vcapp.errors import Unavailable
from vcapp.state.store import Store, per_thread_store


@dataclass(frozen=True)
class ApiConfig:
    """`store` returns a Store for the calling thread; `node` names the machine serving;
    `cluster_key` reads the cluster's secret key (handed to joining machines), None if absent."""

    store: Callable[[], Store]
    node: str
    cluster_key: Callable[[], bytes] | None = None

    @classmethod
    def for_endpoints(cls, endpoints: list[str] | Callable[[], list[str]], node: str,
                      cluster_key: Callable[[], bytes] | None = None) -> ApiConfig:
        return cls(store=per_thread_store(endpoints), node=node, cluster_key=cluster_key)

    @classmethod
    def from_node_config(cls) -> ApiConfig:
        """This machine's API: etcd endpoints and name from its node.json."""
        from vcapp.machine import NodeConfig, cluster_key, config_path

        node_config = NodeConfig.load()
        if node_config is None:
            raise Unavailable(f"no node configuration at {config_path()}; this machine is not in a cluster yet "
                              "(`vcapp cluster init` or `vcapp node join TOKEN`)")
        return cls(store=per_thread_store(node_endpoints()), node=node_config.name, cluster_key=cluster_key)


def node_endpoints() -> Callable[[], list[str]]:
    """This machine's etcd endpoints, read again whenever node.json changes (the daemon
    rewrites it as members come and go)."""
    from vcapp.machine import NodeConfig, config_path

    seen: dict = {"mtime": None, "endpoints": []}

    def read() -> list[str]:
        try:
            mtime = config_path().stat().st_mtime_ns
        except OSError:
            return seen["endpoints"]
        if mtime != seen["mtime"]:
            cfg = NodeConfig.load()
            seen["mtime"], seen["endpoints"] = mtime, cfg.store_endpoints() if cfg else seen["endpoints"]
        return seen["endpoints"]

    return read
