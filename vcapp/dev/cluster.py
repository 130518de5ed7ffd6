"""A simulated multi-machine cluster on one host, built from network namespaces.

`DevCluster` brings a Topology up and down and acts on its hosts: kill (power-off),
revive (boot), partition (cable pulled from the switch), exec, change a site's NAT.
What it creates is named from the cluster name alone (namespaces vc-<cluster>-*, cgroups
vcapp/<cluster>/*, files under <root>/<cluster>, the host's end of the proxy link
vx<cluster>), so `down` cleans up even after a crash that lost the state file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from vcapp.dev import egress, netns, power
from vcapp.dev.topology import BACKBONE_PREFIX, Host, Topology, TopologyError

DEFAULT_ROOT = Path(os.environ.get("VCAPP_DEV_ROOT", "/var/lib/vcapp-dev"))
# Each host's /run lives here. Kept short on purpose: podman puts unix sockets (conmon's
# attach socket) under its run root, and a socket path longer than ~108 bytes makes
# `podman run` hang for 20 s waiting for an exit it can never hear about.
RUN_ROOT = Path("/run/vc")
TRASH = ".trash"  # beside the clusters: directories of removed ones, deleted in the background
RUNC = "/usr/sbin/runc"
# Explicit limits: runc cannot raise a limit above the caller's hard limit here (no
# CAP_SYS_RESOURCE), and a fork bomb in one simulated machine must not take the host down.
NOFILE_WANTED = 65536
NPROC_LIMIT = 4096


def container_ulimits() -> tuple[str, str]:
    nofile = min(NOFILE_WANTED, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    return (f"nofile={nofile}:{nofile}", f"nproc={NPROC_LIMIT}:{NPROC_LIMIT}")


class DevError(RuntimeError):
    """A request the simulated cluster cannot carry out; the message says what to do."""


def root_dir() -> Path:
    return Path(os.environ.get("VCAPP_DEV_ROOT", str(DEFAULT_ROOT)))


class DevCluster:
    def __init__(self, name: str = "dev", root: Path | None = None):
        self.name = name
        self.dir = (root or root_dir()) / name
        self.state_file = self.dir / "state.json"
        # The Python whose vcapp the hosts run (its directory first on their PATH); a test of
        # upgrades gives the hosts an older vcapp's.
        self.python = sys.executable

    # ---- state -------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.state_file.exists()

    def _load(self) -> dict:
        if not self.exists():
            raise DevError(f"cluster {self.name!r} is not up; run: vcapp dev up --cluster {self.name}")
        return json.loads(self.state_file.read_text())

    def _save(self, state: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        os.replace(tmp, self.state_file)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    @property
    def topology(self) -> Topology:
        return Topology.from_dict(self._load()["topology"])

    def host_dir(self, host: str) -> Path:
        return self.dir / "hosts" / host

    def run_dir(self, host: str) -> Path:
        return RUN_ROOT / self.name / host

    def _cgroup(self, host: str) -> str:
        return f"vcapp/{self.name}/{host}"

    # ---- up / down ---------------------------------------------------------------------

    def up(self, topology: Topology) -> None:
        """Create the topology and boot every host. Safe to run again on a running cluster."""
        if topology.cluster != self.name:
            raise DevError(f"topology is for {topology.cluster!r}, not {self.name!r}")
        with self._locked():
            if self.exists():
                current = self._load()
                if current["topology"] != topology.to_dict():
                    raise DevError(
                        f"cluster {self.name!r} is already up with another shape; "
                        f"run `vcapp dev down --cluster {self.name}` first"
                    )
                state = current
            else:
                state = {"topology": topology.to_dict(), "hosts": {}, "services": {}}
            for host in topology.hosts():
                state["hosts"].setdefault(host.name, {"power": "off", "partitioned": False})
            self._save(state)
            self._wire(topology, state)
            self._egress(topology, state)
            self._save(state)
            for host in topology.hosts():
                if host.runs_processes and not self._is_on(state, host.name):
                    self._boot(topology, state, host)
            self._save(state)

    def down(self) -> None:
        """Remove everything the cluster created, whether or not its state survived."""
        with self._locked():
            prefix = f"vc-{self.name}-"
            hosts_root = power.CGROUP_FS / ("freezer" if power.cgroup_v1() else "")
            cg_hosts = hosts_root / "vcapp" / self.name
            names = {p.name for p in cg_hosts.iterdir() if p.is_dir()} if cg_hosts.is_dir() else set()
            names |= {ns[len(prefix):] for ns in netns.list_namespaces(prefix)}
            for host in sorted(names):
                self._power_off(host, f"{prefix}{host}")
            egress.stop(self.egress_dir)
            netns.run(["ip", "link", "delete", egress.host_link(self.name)], check=False)
            for ns in netns.list_namespaces(prefix):
                netns.delete(ns)
            power.remove_cgroup(f"vcapp/{self.name}")
            unmount_below(self.dir)
            unmount_below(RUN_ROOT / self.name)
            shutil.rmtree(RUN_ROOT / self.name, ignore_errors=True)
        discard(self.dir)
        with host_lock():  # not while another cluster comes up
            forget_stale_addresses()

    @property
    def egress_dir(self) -> Path:
        return self.dir / "egress"

    def _egress(self, topo: Topology, state: dict) -> None:
        """The one way out (vcapp/dev/egress.py): the proxy link, its routes, the proxy."""
        with host_lock():  # two clusters coming up together must not take the same slot
            slot = state.get("egress", {}).get("slot")
            if slot is None:
                slot = egress.free_slot(self.name, egress.host_addresses())
            routers = [topo.ns(h.name) for h in topo.hosts() if h.role == "router"]
            try:
                link = egress.wire(self.name, topo.ns("net"), routers, slot)
            except (egress.EgressError, netns.CommandError) as e:
                raise DevError(f"the proxy link of cluster {self.name!r}: {e}") from None
            state["egress"] = {"slot": slot, "proxy": link.url}
        try:
            egress.start(link, self.egress_dir)
        except egress.EgressError as e:
            raise DevError(str(e)) from None

    @property
    def proxy_url(self) -> str | None:
        """The URL of the cluster's way out (http://198.51.100.x:8888), None before `up`."""
        return self._load().get("egress", {}).get("proxy")

    def _wire(self, topo: Topology, state: dict) -> None:
        bb = topo.ns("net")
        netns.add(bb)
        netns.add_bridge(bb, "bb0")
        for host in topo.hosts():
            ns = topo.ns(host.name)
            if host.role in ("edge", "client", "router"):
                netns.add(ns)
                netns.add_cable(ns, "wan", bb, f"p-{host.name}")
                netns.set_master(bb, f"p-{host.name}", "bb0")
                netns.set_up(bb, f"p-{host.name}")
                netns.set_addr(ns, "wan", f"{host.addr}/{BACKBONE_PREFIX}")
                netns.set_up(ns, "wan")
            if host.role == "router":
                site = topo.site(host.name)
                netns.add_bridge(ns, "br-lan")
                netns.set_addr(ns, "br-lan", f"{site.gateway}/{site.lan.prefixlen}")
                netns.sysctl(ns, "net.ipv4.ip_forward", "1")
                apply_nat(ns, site.nat)
            if host.role == "machine":
                router = topo.ns(host.site)
                netns.add(ns)
                netns.add_cable(ns, "eth0", router, f"m-{host.name}")
                netns.set_addr(ns, "eth0", f"{host.addr}/24")
                if not state["hosts"][host.name]["partitioned"]:
                    netns.set_master(router, f"m-{host.name}", "br-lan")
                netns.set_up(router, f"m-{host.name}")
                netns.set_up(ns, "eth0")
                netns.set_default_route(ns, host.gateway)

    # ---- power -------------------------------------------------------------------------

    def _is_on(self, state: dict, host: str) -> bool:
        pid = state["hosts"][host].get("init_pid")
        return power.init_alive(self._cgroup(host), pid)

    def _cable(self, topo: Topology, host: Host) -> tuple[str, str]:
        """(namespace, interface) of the switch side of a host's cable."""
        if host.role == "machine":
            return topo.ns(host.site), f"m-{host.name}"
        return topo.ns("net"), f"p-{host.name}"

    def _host_side(self, host: Host) -> str:
        return "eth0" if host.role == "machine" else "wan"

    def _boot(self, topo: Topology, state: dict, host: Host) -> None:
        hdir = self.host_dir(host.name)
        for sub in ("data", "storage", "etc", "log", "home"):
            (hdir / sub).mkdir(parents=True, exist_ok=True)
        # /run is a tmpfs on a real machine: a boot starts with it empty.
        run = self.run_dir(host.name)
        unmount_below(run)
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True)
        write_podman_config(hdir, run)
        ns = topo.ns(host.name)
        switch_ns, port = self._cable(topo, host)
        netns.set_up(ns, self._host_side(host))
        netns.set_up(switch_ns, port)
        if host.role == "machine":
            netns.set_default_route(ns, host.gateway)
        pid = power.boot_init(self._cgroup(host.name), ns, host.name, hdir / "log" / "init.log")
        state["hosts"][host.name].update(power="on", init_pid=pid)
        for name, cmd in state["services"].get(host.name, {}).items():
            self._start_service(state, host, name, cmd)

    def _power_off(self, host: str, ns: str) -> int:
        container_netns = [n for n in netns.peer_namespaces(ns) if n.startswith("netns-")] if netns.exists(ns) else []
        killed = power.kill_all(self._cgroup(host), ns)
        for cns in container_netns:
            killed += power.kill_all(f"vcapp/{self.name}/{host}", cns)
            netns.delete(cns)
        power.remove_cgroup(self._cgroup(host))
        unmount_below(self.host_dir(host))
        unmount_below(self.run_dir(host))
        shutil.rmtree(self.run_dir(host), ignore_errors=True)
        return killed

    def kill(self, name: str) -> int:
        """Power a host off: SIGKILL all it runs, wipe its /run, unplug its link."""
        with self._locked():
            state, topo = self._load(), self.topology
            host = self._process_host(topo, name)
            killed = self._power_off(name, topo.ns(name))
            if host.role == "machine":
                forget_network_state(topo.ns(name))
            switch_ns, port = self._cable(topo, host)
            netns.set_up(switch_ns, port, False)
            netns.set_up(topo.ns(name), self._host_side(host), False)
            state["hosts"][name].update(power="off", init_pid=None)
            self._save(state)
            return killed

    def revive(self, name: str) -> None:
        """Boot a host that was killed (or boot it again if it is already on: no-op)."""
        with self._locked():
            state, topo = self._load(), self.topology
            host = self._process_host(topo, name)
            if not self._is_on(state, name):
                self._boot(topo, state, host)
            self._save(state)

    def partition(self, name: str, cut: bool = True) -> None:
        """Pull a host's cable out of its switch (the host keeps running and keeps carrier)."""
        with self._locked():
            state, topo = self._load(), self.topology
            host = self._process_host(topo, name)
            switch_ns, port = self._cable(topo, host)
            bridge = "br-lan" if host.role == "machine" else "bb0"
            netns.set_master(switch_ns, port, None if cut else bridge)
            state["hosts"][name]["partitioned"] = cut
            self._save(state)

    def black_hole(self, name: str, on: bool = True) -> None:
        """Drop every packet into, out of and through a host (its processes keep running and
        its cable stays in: what a dead link or a hung kernel looks like to the others);
        `on=False` lets them through again."""
        ns = self.topology.ns(self._process_host(self.topology, name).name)
        for chain in ("INPUT", "OUTPUT", "FORWARD"):
            netns.iptables(ns, "-I" if on else "-D", chain, "-j", "DROP")

    def set_nat(self, site: str, mode: str) -> None:
        """Change a site router's NAT behaviour (easy, hard, udp-blocked) on the fly."""
        with self._locked():
            state, topo = self._load(), self.topology
            topo.site(site)
            for entry in state["topology"]["sites"]:
                if entry["name"] == site:
                    entry["nat"] = mode
            Topology.from_dict(state["topology"])  # validates the mode
            apply_nat(topo.ns(site), mode)
            self._save(state)

    def _process_host(self, topo: Topology, name: str) -> Host:
        try:
            host = topo.host(name)
        except TopologyError as e:
            raise DevError(str(e)) from None
        if not host.runs_processes:
            raise DevError(f"{name} is a {host.role}; only machines, the edge and the client run programs")
        return host

    # ---- running things on hosts -------------------------------------------------------

    def host_env(self, name: str) -> dict[str, str]:
        host, hdir = self.topology.host(name), self.host_dir(name)
        env = dict(os.environ)
        env.update(
            VCAPP_DEV_CLUSTER=self.name,
            VCAPP_HOST=name,
            VCAPP_SITE=host.site or "",
            VCAPP_ROLE=host.role,
            VCAPP_DATA_DIR=str(hdir / "data"),
            VCAPP_RUN_DIR=str(self.run_dir(name)),
            VCAPP_CGROUP_PARENT=f"/{self._cgroup(name)}",
            # wireguard-go's sockets live in /var/run/wireguard for every namespace at once.
            VCAPP_MESH_INTERFACE="wg" + hashlib.sha1(f"{self.name}/{name}".encode()).hexdigest()[:8],
            CONTAINERS_CONF=str(hdir / "etc" / "containers.conf"),
            CONTAINERS_STORAGE_CONF=str(hdir / "etc" / "storage.conf"),
            HOME=str(hdir / "home"),
            PATH=f"{Path(self.python).parent}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
        )
        return env

    def command(self, name: str, cmd: list[str]) -> tuple[list[str], dict[str, str], str]:
        """(argv, env, cgroup) that run `cmd` on a booted host."""
        state, topo = self._load(), self.topology
        self._process_host(topo, name)
        if not self._is_on(state, name):
            raise DevError(f"{name} is powered off; boot it with: vcapp dev revive {name}")
        argv = power.host_command(topo.ns(name), state["hosts"][name]["init_pid"], cmd)
        return argv, self.host_env(name), self._cgroup(name)

    def run(self, name: str, cmd: list[str], timeout: float | None = 120, **kw) -> subprocess.CompletedProcess:
        """Run a command on a host and wait for it (output captured as text). It starts in the
        host's home, not in the caller's directory: a git work tree there is not the machine's
        (`vcapp apps create` adds a git remote to the work tree it runs in)."""
        argv, env, cgroup = self.command(name, cmd)
        kw.setdefault("cwd", env["HOME"])
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(argv, env=env, timeout=timeout, preexec_fn=lambda: power.join_cgroup(cgroup), **kw)

    def spawn(self, name: str, cmd: list[str], log: Path | None = None, **kw) -> subprocess.Popen:
        """Start a long-running command on a host; it dies with the host."""
        argv, env, cgroup = self.command(name, cmd)
        out = open(log, "ab") if log else subprocess.DEVNULL
        kw.setdefault("stdout", out)
        kw.setdefault("stderr", subprocess.STDOUT if log else subprocess.DEVNULL)
        kw.setdefault("stdin", subprocess.DEVNULL)
        try:
            return subprocess.Popen(
                argv, env=env, start_new_session=True, preexec_fn=lambda: power.join_cgroup(cgroup), **kw
            )
        finally:
            if log:
                out.close()

    def add_service(self, host: str, name: str, cmd: list[str]) -> None:
        """Register a program the host starts at every boot, and start it now."""
        with self._locked():
            state, topo = self._load(), self.topology
            state["services"].setdefault(host, {})[name] = cmd
            if self._is_on(state, host):
                self._start_service(state, topo.host(host), name, cmd)
            self._save(state)

    def _start_service(self, state: dict, host: Host, name: str, cmd: list[str]) -> None:
        argv = power.host_command(self.topology.ns(host.name), state["hosts"][host.name]["init_pid"], cmd)
        cgroup = self._cgroup(host.name)
        with open(self.host_dir(host.name) / "log" / f"{name}.log", "ab") as out:
            subprocess.Popen(  # in /, as systemd starts a unit: `python -m` imports from its cwd
                argv, env=self.host_env(host.name), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, cwd="/",
                preexec_fn=lambda: power.join_cgroup(cgroup),
            )

    def status_services(self, host: str) -> list[str]:
        """Names of the boot services registered on a host."""
        return sorted(self._load()["services"].get(host, {}))

    def host_pids(self, name: str) -> set[int]:
        """Every live process of a host (its cgroup tree and its network namespace)."""
        pids = power.cgroup_pids(self._cgroup(name)) | power.namespace_pids(self.topology.ns(name))
        return {p for p in pids if power.alive(p)}

    # ---- status ------------------------------------------------------------------------

    def status(self) -> dict:
        state, topo = self._load(), self.topology
        hosts = []
        for host in topo.hosts():
            if host.role == "backbone":
                continue
            entry = state["hosts"].get(host.name, {})
            ns = topo.ns(host.name)
            hosts.append({
                "name": host.name,
                "role": host.role,
                "site": host.site,
                "namespace": ns,
                "addresses": netns.addresses(ns) if netns.exists(ns) else {},
                "power": ("on" if self._is_on(state, host.name) else "off") if host.runs_processes else "-",
                "partitioned": entry.get("partitioned", False),
                "nat": topo.site(host.name).nat if host.role == "router" else None,
                "services": sorted(state["services"].get(host.name, {})),
            })
        return {"cluster": self.name, "dir": str(self.dir), "hosts": hosts}


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    """One cluster at a time changes what the host's own namespace holds (the proxy links)."""
    root_dir().mkdir(parents=True, exist_ok=True)
    with open(root_dir() / ".host.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# Podman as root keeps every network's address allocations in this one host-wide file, by
# network name (its netavark backend; podman 4.3 has no setting to move it). The simulated
# machines share it, and a simulated power-off, unlike a real reboot that empties /run, leaves
# their containers' addresses allocated: after enough runs an app name's subnet has no
# address left ("IPAM error: failed to find free IP in range").
PODMAN_IPAM_DB = Path("/run/containers/networks/ipam.db")


def forget_stale_addresses(ipam_db: Path = PODMAN_IPAM_DB) -> bool:
    """With no simulated cluster on this host and no container of the host's own podman,
    nothing holds an address: remove the allocations file (podman makes it again). True if it
    did."""
    if not ipam_db.exists() or list_clusters():
        return False
    own = subprocess.run(["podman", "ps", "-aq"], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "CONTAINERS_CONF"})
    if own.returncode != 0 or own.stdout.strip():
        return False
    ipam_db.unlink(missing_ok=True)
    return True


def discard(path: Path) -> None:
    """Take the directory `path` away at once (a cluster of the same name may be made next) and
    delete its files in the background: renamed into TRASH beside it, then removed by an `rm`
    of its own that outlives this process (with whatever an earlier one left there).

    A cluster that built and ran apps holds hundreds of thousands of files (stack images, build
    layers, storage): deleting them took a minute, disk-bound, and `vcapp dev down` (and every
    cluster test's teardown) waited for it. Nothing is mounted below `path` any more: the caller
    unmounted it, and `rm --one-file-system` stays off anything that was left."""
    if not path.is_dir():
        return
    trash = path.parent / TRASH
    trash.mkdir(exist_ok=True)
    try:
        path.rename(trash / f"{path.name}.{os.getpid()}.{time.time_ns()}")
    except OSError:  # another filesystem below the root: delete it here, as before
        shutil.rmtree(path, ignore_errors=True)
        return
    # sh forks the rm off and exits: the rm is nobody's child to reap
    subprocess.run(["sh", "-c", 'nice -n 10 rm -rf --one-file-system -- "$@" >/dev/null 2>&1 &', "discard",
                    *map(str, trash.iterdir())], check=False)


def list_clusters(root: Path | None = None) -> list[str]:
    base = root or root_dir()
    found = {p.parent.name for p in base.glob("*/state.json")} if base.is_dir() else set()
    found |= {ns.split("-")[1] for ns in netns.list_namespaces("vc-") if ns.count("-") >= 2}
    return sorted(found)


def apply_nat(router_ns: str, mode: str) -> None:
    """Replace a site router's NAT and firewall rules with those of `mode`.

    Like a real home router: the LAN goes out masqueraded, replies come back, and nothing
    from the internet reaches the LAN unasked."""
    for table, chain in (("nat", "POSTROUTING"), ("filter", "FORWARD"), ("filter", "INPUT")):
        netns.iptables(router_ns, "-t", table, "-F", chain)
    # Unsolicited UDP to the router itself is dropped, as real home routers do. Accepting it
    # would make conntrack hold the very port a hole punch needs, and NAT would then give
    # the machine behind it another one.
    netns.iptables(router_ns, "-t", "filter", "-A", "INPUT", "-i", "wan", "-p", "udp",
                   "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP")
    masquerade = ["-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"]
    if mode == "hard":
        masquerade.append("--random-fully")
    netns.iptables(router_ns, *masquerade)
    fwd = ["-t", "filter", "-A", "FORWARD"]
    netns.iptables(router_ns, *fwd, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
    if mode == "udp-blocked":
        netns.iptables(router_ns, *fwd, "-i", "br-lan", "-o", "wan", "-p", "udp", "-j", "DROP")
    netns.iptables(router_ns, *fwd, "-i", "br-lan", "-j", "ACCEPT")
    netns.iptables(router_ns, *fwd, "-i", "wan", "-o", "br-lan", "-j", "DROP")
    # A changed NAT must apply to flows already open too, as after a router reboot.
    netns.ns_exec(router_ns, "conntrack", "-F", check=False)


def forget_network_state(ns: str) -> None:
    """What a real reboot clears in a machine's network stack: the interfaces its programs
    made (podman's bridges and veths, the mesh's tun) and every firewall rule (netavark's
    chains, the storage fast-fail). Left in place, a revived machine's new containers sat
    behind stale port forwards to its old containers' addresses. The namespace stays, with
    its cable and loopback."""
    out = netns.run(["ip", "-n", ns, "-o", "link", "show"], check=False).stdout
    for line in out.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name not in ("lo", "eth0"):
            netns.run(["ip", "-n", ns, "link", "delete", name], check=False)
    netns.ns_exec(ns, "nft", "flush", "ruleset", check=False)


def write_podman_config(hdir: Path, run: Path) -> None:
    """Per-host podman: its own storage, run state, locks, network configs, runc and limits.

    Podman keeps some state in host-wide places (/run/runc, the /dev/shm lock table) that
    real machines own alone; here each host gets its own, under its /run, so a power-off
    loses them as it would on a real machine and hosts never share a lock."""
    etc, storage = hdir / "etc", hdir / "storage"
    runc = etc / "runc"
    runc.write_text(f'#!/bin/sh\nexec {RUNC} --root "{run}/runc" "$@"\n')
    runc.chmod(0o755)
    ulimits = ", ".join(f'"{u}"' for u in container_ulimits())
    (etc / "containers.conf").write_text(
        "[containers]\n"
        f"default_ulimits = [{ulimits}]\n\n"
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        'lock_type = "file"\n'
        f'tmp_dir = "{run}/libpod"\n'
        f'static_dir = "{storage}/libpod"\n'
        f'volume_path = "{storage}/volumes"\n\n'
        "[engine.runtimes]\n"
        f'runc = ["{runc}"]\n\n'
        "[network]\n"
        f'network_config_dir = "{etc}/networks"\n'
    )
    (etc / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{storage}"\nrunroot = "{run}/c"\n'
    )


def mounts_below(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(prefix) or point == prefix.rstrip("/"):
                found.append(point)
    return found


def unmount_below(path: Path) -> None:
    for point in sorted(mounts_below(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
