"""Node loop: keep this machine's etcd revocation list equal to the cluster's (keys.ETCD_REVOKED).

Removing a machine moves its etcd certificate's serial to /vc/etcd/revoked/ (membership.
remove_node). Every machine signs the list with the CA key (derived from the cluster key it
holds) into <data dir>/keys/etcd/revoked.crl, which its etcd reads at each TLS handshake
(--client-crl-file, --peer-crl-file): the removed machine's next connection is refused, with
no restart. Connections it already holds were admitted before; for each newly revoked
machine they are aborted (`ss -K`, like storage/fastfail.py), so it has nothing left open.

Every machine writes the file, member or not: a machine invited to be a member later starts
its etcd with the list already current.
"""

from __future__ import annotations

import logging
import subprocess

from vcapp import etcdtls
from vcapp.machine import ETCD_CLIENT_PORT, ETCD_PEER_PORT, cluster_key
from vcapp.node.harness import Every
from vcapp.state import membership

log = logging.getLogger("vcapp.node")

# A removed machine keeps etcd access until every member has read the list: a short period
# bounds that window; one range read of a handful of keys per period is nothing to etcd.
REFRESH_EVERY_S = 2.0
SS_TIMEOUT = 10.0  # ss answers in milliseconds


def abort_filter(addr: str) -> list[str]:
    """`ss` arguments selecting connections from `addr` to this machine's etcd ports."""
    return ["-t", "dst", addr, "(", "sport", "=", f":{ETCD_CLIENT_PORT}", "or",
            "sport", "=", f":{ETCD_PEER_PORT}", ")"]


def to_abort(revoked: dict[str, dict], written: dict[str, dict] | None, own_addr: str) -> list[str]:
    """The addresses whose etcd connections to abort once `revoked` replaces `written` (pure):
    the other machines revoked since. At the daemon's start (`written` None) nothing: its
    etcd, its child, was not running."""
    if written is None:
        return []
    fresh = [r for s, r in revoked.items() if s not in written]
    return [r["addr"] for r in fresh if r.get("addr") and r["addr"] != own_addr]


class CrlLoop:
    name = "etcd-crl"

    def __init__(self, ctx) -> None:
        self.written: dict[str, dict] | None = None  # what the file holds, serial -> record
        self.refresh = Every(REFRESH_EVERY_S)

    def step(self, ctx) -> None:
        if not self.refresh.due():
            return
        revoked = membership.revoked_etcd_certs(ctx.store)
        if self.written is not None and revoked.keys() == self.written.keys():
            return
        etcdtls.write_crl(ctx.base, cluster_key(), sorted(revoked))
        aborts = to_abort(revoked, self.written, ctx.cfg.addr)
        self.written = revoked
        log.info("etcd revocation list written: %d certificate(s)", len(revoked))
        for addr in aborts:
            self._abort(addr)

    @staticmethod
    def _abort(addr: str) -> None:
        out = subprocess.run(["ss", "-K", *abort_filter(addr)], capture_output=True, text=True, timeout=SS_TIMEOUT)
        if out.returncode != 0:
            log.warning("could not abort etcd connections from %s: %s", addr, out.stderr.strip())
