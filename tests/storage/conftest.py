"""Fixtures for storage tests: a simulated 3-machine site running etcd and SeaweedFS.

`storage_sim` (module scope) boots three machines on one LAN; vcapp/dev/rigs/storage.py's
`start_storage_cluster` starts a 3-member etcd on them and the storage daemon's processes on
every machine. `EtcdWriterStore` stands in for the control plane's client.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import pytest

from vcapp.dev.cluster import DevCluster
from vcapp.dev.rigs.storage import SimHost
from vcapp.dev.topology import default

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@pytest.fixture(scope="module")
def storage_sim():
    """A 3-machine LAN (home-1..3) under its own name (s<hex>): other test sessions clean up
    stale t<hex> clusters at start, and must not take this one down while it runs."""
    if os.geteuid() != 0:
        pytest.fail("storage cluster tests create network namespaces: run them as root")
    dc = DevCluster("s" + secrets.token_hex(2))
    try:
        dc.up(default(dc.name, 3, 0))
        yield dc
    finally:
        keep_logs(dc)
        dc.down()


def keep_logs(dc: DevCluster) -> None:
    """Copy every machine's storage logs to artifacts/storage-<cluster>/ before teardown."""
    for host in ("home-1", "home-2", "home-3"):
        src = dc.host_dir(host) / "data" / "storage" / "log"
        if src.is_dir():
            shutil.copytree(src, ARTIFACTS / f"storage-{dc.name}" / host, dirs_exist_ok=True)


class EtcdWriterStore:
    """storage.guard.WriterStore on a real etcd through etcdctl, bound to one node's lease.

    Stands in for the control plane's client. Values are hex-encoded so etcdctl's txn
    syntax never has to quote JSON. `expire()` revokes the lease, as etcd does when the
    node stops renewing it."""

    LEASE_TTL = 60  # seconds; the test ends the lease itself with expire()

    def __init__(self, host: SimHost, endpoints: list[str]):
        self.host, self.endpoints = host, ",".join(endpoints)
        self.lease = self._ctl("lease", "grant", str(self.LEASE_TTL)).split()[1]

    def _ctl(self, *args: str, input: str | None = None) -> str:
        out = self.host.run(["etcdctl", "--endpoints", self.endpoints, *args], input=input, timeout=30)
        if out.returncode != 0:
            raise AssertionError(f"etcdctl {' '.join(args)}: {out.stderr}")
        return out.stdout

    def get(self, key: str) -> str | None:
        raw = self._ctl("get", key, "--print-value-only").strip()
        return bytes.fromhex(raw).decode() if raw else None

    def put_if_absent(self, key: str, value: str) -> bool:
        txn = f'create("{key}") = "0"\n\nput {key} {value.encode().hex()} --lease={self.lease}\n\n\n'
        return self._ctl("txn", input=txn).startswith("SUCCESS")

    def delete_if_equal(self, key: str, value: str) -> bool:
        txn = f'value("{key}") = "{value.encode().hex()}"\n\ndel {key}\n\n\n'
        return self._ctl("txn", input=txn).startswith("SUCCESS")

    def expire(self) -> None:
        self._ctl("lease", "revoke", self.lease)
