"""`vcapp node run`: the daemon every machine runs from boot.

Until the machine belongs to a cluster (no node.json) it waits. Then, each tick:
- keeps its etcd member running (a child process, if this machine is one);
- runs the mesh agent (vcapp/node/mesh_agent.py) and serves the admin API
  (vcapp/api/serve.py) from threads of its own process;
- keeps its liveness lease alive (/vc/alive/<name>), which is how the others know it is up
  (renewed on its own thread, vcapp/node/lease.py, so slow etcd calls here never delay it);
- accepts an invitation to become an etcd member;
- refreshes its node record (resources) and the list of etcd endpoints it knows;
- runs this machine's reconcile loops (vcapp/node/loops.py: containers, routes, storage...);
- tries to hold /vc/election/controller with the same lease, and if it does, runs the
  controller and the cluster-wide loops (placement, ...). When the machine
  dies the lease expires, and with it the leadership.

A loop is an object with `name` and `step(ctx: NodeContext)`, made by a factory from the
context once; each loop is "read desired, read actual, converge" and safe to rerun.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from mesh.meshd import AgentConfig
from vcapp import __version__, etcdtls, version
from vcapp.api.serve import ApiServer
from vcapp.machine import NodeConfig, cluster_key, config_path, data_dir, mesh_credential_path, run_dir
from vcapp.node import etcd, loops, resources
from vcapp.node.children import Child, Restarts
from vcapp.node.controller import Controller
from vcapp.node.lease import LEASE_TTL, LeaseKeeper
from vcapp.node.mesh_agent import MeshThread
from vcapp.pidfile import live_pid
from vcapp.state import etcd_members, keys, peerwatch
from vcapp.state.store import Store, StoreUnavailable, absent, delete_op, put_op, unchanged

log = logging.getLogger("vcapp.node")

TICK = 0.5  # s: how often the lease is renewed and the controller looks; cheap at 10 nodes
REFRESH_EVERY = 10.0  # s: node record (resources) and etcd endpoint list
CONFIG_POLL = 0.25  # s: waiting for `cluster init` / `node join` to write node.json


@dataclass
class NodeContext:
    """What a loop may use: this machine's config and data dir, the store, and the lease
    (lease_confirmed: monotonic time the last successful renewal was sent)."""

    cfg: NodeConfig
    base: Path
    store: Store
    lease: int
    leader: bool
    lease_confirmed: Callable[[], float] = time.monotonic


class Loop(Protocol):
    name: str

    def step(self, ctx: NodeContext) -> None: ...


def pid_file() -> Path:
    return run_dir() / "vcapp-node.pid"


def running_pid() -> int | None:
    """Pid of this machine's running daemon, if any."""
    return live_pid(pid_file(), "node", "run")


class Daemon:
    def __init__(self, replace_after: float = etcd_members.DEFAULT_REPLACE_AFTER):
        self.base = data_dir()
        self.etcd = Child("etcd", self.base / "log" / "etcd.log")
        self.api = ApiServer()
        self._api_restarts = Restarts()
        self.mesh = MeshThread()
        self._mesh_problem = ""
        self.replace_after = replace_after
        self.lease = 0
        self.keeper = LeaseKeeper(TICK)
        self.leader = False
        self.etcd_down = False
        self.controller: Controller | None = None
        self.store: Store | None = None
        self._endpoints: list[str] = []
        self._last_refresh = 0.0
        self._loops: dict[str, Loop] = {}

    # ---- the loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            cfg = NodeConfig.load()
            if cfg is None:
                stop.wait(CONFIG_POLL)
                continue
            self.step(cfg)
            stop.wait(TICK)
        self.shutdown()

    def step(self, cfg: NodeConfig) -> None:
        if not self._children(cfg) and not self.lease:
            # Before its first lease a machine waits for its mesh address: its etcd endpoints are
            # on the mesh, and a step asking them first waits out their timeouts (5 s a join).
            return
        store = self._store(cfg)
        try:
            self._liveness(cfg, store)
            self._accept_invite(cfg, store)
            if time.monotonic() - self._last_refresh > REFRESH_EVERY:
                self._refresh(cfg, store)
            with store.shared_reads(gate_on_member=True):  # the loops read the same machines and liveness once
                self._lead(cfg.name, store)
                self._run_loops(cfg, store)
        except StoreUnavailable as e:
            # Keep the lease (and the leadership bound to it): etcd keeps a lease through a
            # leader election, and extends it, until its TTL runs out without a renewal. The
            # next keepalive tells whether it is still ours; granting a new one at once would
            # orphan every key on the old lease (status reports, meshpaths) when it expires.
            if self.lease and not self.etcd_down:
                log.warning("etcd unreachable (%s); liveness cannot be renewed", e)
            self.etcd_down = True
            return
        except Exception:  # a daemon that dies on one odd answer stops the machine's liveness
            log.exception("node step failed; trying again next tick")
        self.etcd_down = False

    def shutdown(self) -> None:
        self.keeper.stop()
        if self.store and self.lease:
            try:
                self.store.revoke(self.lease)  # leave cleanly: others see us down at once
            except StoreUnavailable:
                pass
        self.api.stop()
        self.etcd.stop()
        self.mesh.stop()

    # ---- pieces --------------------------------------------------------------------------

    def _children(self, cfg: NodeConfig) -> bool:
        """Keep the mesh, etcd and the API running; False while the mesh address is not up."""
        if cfg.mesh:
            try:
                self.mesh.ensure(mesh_config(cfg))
                self._mesh_problem = ""
            except Exception as e:  # no credential file (the join did not finish), no wireguard-go...
                if str(e) != self._mesh_problem:  # once, not every tick; never the tick itself
                    log.error("cannot start the mesh agent: %s; if the join did not finish, join this machine "
                              "again (vcapp node join)", e)
                self._mesh_problem = str(e)
                return False
            if not address_present(cfg.addr):
                return False  # etcd and the API listen on the overlay address: wait for the mesh
        if cfg.etcd.member:
            tls = etcdtls.paths(self.base)
            if tls.complete() and not tls.crl.exists():  # etcd refuses every handshake without it
                etcdtls.write_crl(self.base, cluster_key(), [])  # crl_loop fills it
            self.etcd.ensure(etcd.command(cfg, self.base), env=etcd.environment())
        else:
            self.etcd.stop()
        self._serve_api([f"{cfg.addr}:{cfg.api_port}", f"127.0.0.1:{cfg.api_port}"])
        return True

    def _serve_api(self, binds: list[str]) -> None:
        """Serve the admin API in this process; a bind that fails is tried again with back-off
        (an old API server of this machine may still hold the port for a moment)."""
        now = time.monotonic()
        if self.api.running() and self.api.binds == tuple(binds):
            self._api_restarts.still_running(now)
            return
        if not self._api_restarts.may_start(now):
            return
        try:
            self.api.ensure(binds)
            self._api_restarts.started(now)
        except Exception as e:  # a port in use (OSError), an unreadable node.json: never the tick
            log.warning("the admin API cannot serve on %s: %s; trying again in %.0fs",
                        ", ".join(binds), e, self._api_restarts.stopped(now))

    def _store(self, cfg: NodeConfig) -> Store:
        endpoints = cfg.store_endpoints()
        if self.store is None or endpoints != self._endpoints:
            self.store, self._endpoints = Store(endpoints), endpoints
            self.controller = Controller(self.store, self.replace_after)
        return self.store

    def _liveness(self, cfg: NodeConfig, store: Store) -> None:
        self.keeper.set_endpoints(cfg.store_endpoints())
        if self.lease and not self.keeper.expired():
            return
        if self.lease:
            log.warning("liveness lease %x expired; taking a new one", self.lease)
        began = time.monotonic()
        self.lease = store.grant(LEASE_TTL)
        self.leader = False
        store.put(keys.alive(cfg.name), {"at": time.time(), "addr": cfg.addr}, lease=self.lease)
        self.keeper.adopt(self.lease, began)
        log.info("liveness lease %x granted", self.lease)

    def _accept_invite(self, cfg: NodeConfig, store: Store) -> None:
        if cfg.etcd.member:
            return
        invite = store.value(keys.etcd_invite(cfg.name))
        if not invite:
            return
        cfg.etcd.member = True
        cfg.etcd.state = "existing"
        cfg.etcd.initial_cluster = invite["initial_cluster"]
        cfg.save()
        store.delete(keys.etcd_invite(cfg.name))
        log.info("joining etcd as a member: %s", invite["initial_cluster"])

    def _refresh(self, cfg: NodeConfig, store: Store) -> None:
        record = store.get(keys.node(cfg.name))
        if record is None:
            return  # removed from the cluster: `vcapp node leave` cleans up the rest
        measured, now = resources.measure(self.base), time.time()
        fresh = dict(record.value, **measured, version=__version__, build=version.build(), etcd_member=cfg.etcd.member,
                     updated_at=now)
        if resources.worth_writing(record.value, fresh, now):
            # Only if nobody changed (or removed) the record since we read it: a refresh must never
            # bring back a machine an admin just removed.
            store.txn([unchanged(keys.node(cfg.name), record.mod_revision)], [put_op(keys.node(cfg.name), fresh)])
        members = store.members()
        self._demote_if_removed(cfg, store, members)
        urls = sorted({u for m in members for u in m.client_urls})
        if urls and urls != sorted(cfg.endpoints):
            cfg.endpoints = urls
            cfg.save()
        self._last_refresh = time.monotonic()

    def _demote_if_removed(self, cfg: NodeConfig, store: Store, members: list) -> None:
        """A machine whose member was replaced while it was off comes back as a client: its
        old etcd would only fail to start. Its data is kept aside, not deleted."""
        if not cfg.etcd.member or any(cfg.etcd_peer_url in m.peer_urls for m in members):
            return
        if store.get(keys.etcd_member(cfg.name)) or store.get(keys.etcd_invite(cfg.name)):
            return
        log.warning("this machine's etcd member was removed from the cluster; continuing as a client")
        self.etcd.stop()
        old = etcd.data_dir(self.base)
        if old.exists():
            old.rename(old.with_name(f"etcd.removed-{int(time.time())}"))
        cfg.etcd.member = False
        cfg.save()

    def _lead(self, name: str, store: Store) -> None:
        key = keys.election("controller")
        held = store.get(key)
        if self.leader and (held is None or held.lease != self.lease):
            log.warning("no longer the controller: the election went to another machine")
            self.leader = False
        if not self.leader:
            holder = (held.value or {}).get("node") if held is not None and isinstance(held.value, dict) else None
            if holder and holder != name and peerwatch.is_unreachable(store, holder):
                # Its lease would hold the election for seconds more, and with it every move.
                if store.txn([unchanged(key, held.mod_revision)], [delete_op(key)]):
                    log.warning("the controller's machine is unreachable (vcapp/state/peerwatch.py): electing again")
                    held = None
            # Campaign only for a free seat: a txn that writes goes through Raft to every member's
            # disk even when its compare fails, and each machine that is not the controller
            # tried twice a second (4 proposals a second of an idle three-machine cluster).
            # The seat frees when the holder's lease ends; this tick's read saw that. A seat
            # held on this machine's own lease is its own (a campaign whose answer was lost).
            if held is None:
                self.leader = store.txn([absent(key)], [put_op(key, {"lease": self.lease, "node": name},
                                                                   lease=self.lease)])
            else:
                self.leader = bool(self.lease) and held.lease == self.lease and holder == name
            if self.leader:
                log.info("elected controller")
        if self.leader and self.controller:
            self.controller.tick()


    def _run_loops(self, cfg: NodeConfig, store: Store) -> None:
        ctx = NodeContext(cfg, self.base, store, self.lease, self.leader, self.keeper.confirmed_at)
        factories = [(f, False) for f in loops.node_loops()] + [(f, True) for f in loops.leader_loops()]
        for factory, leader_only in factories:
            if leader_only and not self.leader:
                continue
            key = f"{factory.__module__}.{getattr(factory, '__qualname__', factory)}"
            loop = self._loops.get(key) or self._loops.setdefault(key, factory(ctx))
            try:
                loop.step(ctx)
            except StoreUnavailable:
                raise
            except Exception:  # one broken loop must not stop liveness or the others
                log.exception("loop %s failed; next tick tries again", loop.name)


def mesh_config(cfg: NodeConfig) -> AgentConfig:
    """The mesh agent's settings for this machine (its join credential read afresh: a new
    join writes a new one)."""
    return AgentConfig(cfg.mesh.coord_url, cfg.name, cfg.mesh.ip, mesh_credential_path().read_text().strip(),
                       cfg.mesh.interface, data_dir(), run_dir() / "mesh")


def address_present(addr: str) -> bool:
    """Is `addr` one of this machine's own addresses, one etcd and the API can bind? Asked every
    tick: a file the kernel writes, where `ip addr` was a process spawned twice a second (with
    its fork from this process, a fifth of the daemon's idle CPU, bench/footprint.py)."""
    return addr in local_addresses(Path("/proc/net/fib_trie").read_text())


def local_addresses(fib_trie: str) -> set[str]:
    """The IPv4 addresses of this network namespace, from /proc/net/fib_trie: each leaf
    ("|-- 10.0.0.1") lists its routes below it; a local address has a "/32 host LOCAL" one."""
    found, leaf = set(), ""
    for line in fib_trie.splitlines():
        text = line.strip()
        if text.startswith("|-- "):
            leaf = text[4:]
        elif text == "/32 host LOCAL" and leaf:
            found.add(leaf)
    return found


def main(replace_after: float) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if running_pid() not in (None, os.getpid()):
        raise SystemExit(f"vcapp node is already running on this machine (pid {running_pid()})")
    pid_file().parent.mkdir(parents=True, exist_ok=True)
    pid_file().write_text(str(os.getpid()))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("vcapp node %s starting; config %s", version.describe(), config_path())  # fixes the build
    Daemon(replace_after).run(stop)
