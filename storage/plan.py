"""The storage plan: which SeaweedFS processes each machine runs, with which flags.

A pure function of the cluster's members (name, site, address) and its etcd endpoints:

    masters   3 machines (Raft) when there are >= 3, else 1 — the first by name, so every
              machine computes the same set without talking to the others
    volume    every machine but those whose data moved off (`volume_off`: a storage drain):
              -dataCenter=<site> -rack=<machine> (one rack per machine, so copies land on
              distinct machines; see storage/replication.py)
    filer+S3  every machine; the filer's metadata lives in the cluster's etcd (filer.toml
              [etcd]), so any filer serves any path and no filer's disk is special

Everything a machine stores lives under <data_dir>/storage/. No I/O here: the agent
(storage/storaged.py) turns a MachinePlan into running processes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from storage import replication

MASTER_PORT = 9333
VOLUME_PORT = 8080
FILER_PORT = 8888
S3_PORT = 8333
MASTER_COUNT = 3  # Raft needs an odd count; 3 survive the loss of any one machine
# Small volumes: a volume is the unit of replication and repair, and copying 1 GB when a
# machine returns takes seconds; SeaweedFS's default (30 GB) would take minutes.
VOLUME_SIZE_LIMIT_MB = 1024
# Volume files are sparse: slots cost no disk until written. Every volume (one per
# collection and replication code) takes a slot on each machine holding a copy.
VOLUME_SLOTS = 200
# Keep 1 GiB free: below it SeaweedFS marks the machine's volumes read-only instead of
# failing writes halfway through.
MIN_FREE_SPACE = "1GiB"
# Raft election timeout of the masters. SeaweedFS's default (10 s) plus the shell's wait for a
# leader spent ~40 s of a 15 s failover budget when the leader's machine died; masters talk
# over a LAN or the mesh (ms round trips, 300 ms heartbeats), so 3 s is still 10 heartbeats.
MASTER_ELECTION_TIMEOUT = "3s"
# The volume servers keep their needle index in memory (SeaweedFS's default). With
# `-index=leveldb`, SeaweedFS 4.48 counts a volume's overwritten needles as deletions when it
# loads a copied index but not when they were written, so every copy of a volume that had an
# overwrite (any file appended to through `weed mount`) failed its check at the target
# ("target deleted count [7] is not same as origin deleted count [0]") and the volume could
# not move off a drained machine. In memory it costs ~20 bytes per stored chunk.
# Raft: hashicorp/raft instead of SeaweedFS's default goraft, with which a cut-off (not
# powered-off) leader can leave the two other masters without a working leader for minutes
# (seaweedfs issues #629, #5872).


@dataclass(frozen=True)
class Machine:
    name: str
    site: str
    addr: str


@dataclass(frozen=True)
class ProcessSpec:
    """One long-running process: its argv, its working directory (relative to the
    machine's storage dir) and files it needs there."""

    name: str
    argv: tuple[str, ...]
    cwd: str
    files: dict[str, str] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.name, self.argv, self.cwd, tuple(sorted(self.files.items()))))


@dataclass(frozen=True)
class EtcdTLS:
    """Files a filer's etcd client presents and trusts: etcd admits only clients with a
    certificate from the cluster CA."""

    ca: str
    cert: str
    key: str


@dataclass(frozen=True)
class EtcdLogin:
    """The etcd user a filer logs in as when etcd has authentication on. It is written to
    filer.toml only, mode 0600 (storage/storaged.py), never to a command line."""

    user: str
    password: str

    def __repr__(self) -> str:
        return f"EtcdLogin(user={self.user!r})"


@dataclass(frozen=True)
class ClusterPlan:
    masters: tuple[Machine, ...]
    machines: tuple[Machine, ...]
    etcd: tuple[str, ...]
    default_replication: str
    etcd_prefix: str  # the filers' metadata keys start with it (the control plane names it)
    etcd_tls: EtcdTLS | None = None
    etcd_login: EtcdLogin | None = None
    # Machines that run no volume server: their copies moved to others (storage/evacuate.py),
    # and a volume server there would take new volumes again.
    volume_off: frozenset[str] = frozenset()

    @property
    def master_list(self) -> str:
        return ",".join(f"{m.addr}:{MASTER_PORT}" for m in self.masters)

    def filer_list(self, first: Machine | None = None) -> str:
        """Every filer, `first` (usually the local one) in front: weed mount fails over in order."""
        order = sorted(self.machines, key=lambda m: (m != first, m.name))
        return ",".join(f"{m.addr}:{FILER_PORT}" for m in order)

    def machine(self, name: str) -> Machine:
        for m in self.machines:
            if m.name == name:
                return m
        raise KeyError(f"{name} is not a member of the storage cluster; add it to the cluster first")


def plan_cluster(machines: list[Machine], etcd: list[str], etcd_prefix: str, etcd_tls: EtcdTLS | None = None,
                 etcd_login: EtcdLogin | None = None, volume_off: frozenset[str] = frozenset()) -> ClusterPlan:
    """The cluster-wide plan from every member machine (alive or not) and etcd's endpoints
    (host:port; with `etcd_tls`, reached over TLS with that client certificate, and as
    `etcd_login` when etcd has authentication on); the filers keep their metadata under
    `etcd_prefix`. `volume_off`: machines that run no volume server."""
    if not machines:
        raise ValueError("a storage cluster needs at least one machine")
    if not etcd:
        raise ValueError("the filers keep their metadata in etcd: give its endpoints (host:port)")
    ordered = tuple(sorted(machines, key=lambda m: m.name))
    count = MASTER_COUNT if len(ordered) >= MASTER_COUNT else 1
    return ClusterPlan(
        masters=ordered[:count],
        machines=ordered,
        etcd=tuple(etcd),
        default_replication=replication.choose_code([m.site for m in ordered if m.name not in volume_off]
                                                    or [m.site for m in ordered]),
        etcd_prefix=etcd_prefix,
        etcd_tls=etcd_tls,
        etcd_login=etcd_login,
        volume_off=frozenset(volume_off) & {m.name for m in ordered},
    )


def filer_toml(etcd: tuple[str, ...], prefix: str, tls: EtcdTLS | None = None, login: EtcdLogin | None = None) -> str:
    """The filer store: the cluster's etcd, not a local leveldb."""
    return (
        "[filer.options]\nrecursive_delete = true\n\n"
        "[leveldb2]\nenabled = false\n\n"
        "[etcd]\nenabled = true\n"
        f'servers = "{",".join(etcd)}"\n'
        f"key_prefix = {_toml_string(prefix)}\n"
        'timeout = "3s"\n'
        + (f'tls_ca_file = "{tls.ca}"\ntls_client_crt_file = "{tls.cert}"\ntls_client_key_file = "{tls.key}"\n'
           if tls else "")
        + (f"username = {_toml_string(login.user)}\npassword = {_toml_string(login.password)}\n" if login else "")
    )


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escaping is valid TOML for printable text."""
    return json.dumps(text)


def machine_processes(plan: ClusterPlan, name: str, weed: str = "weed") -> list[ProcessSpec]:
    """The processes machine `name` runs, in start order (master, volume, filer)."""
    me = plan.machine(name)
    specs = []
    if me in plan.masters:
        specs.append(_master(plan, me, weed))
    if me.name not in plan.volume_off:
        specs.append(_volume(plan, me, weed))
    specs.append(_filer(plan, me, weed))
    return specs


def _master(plan: ClusterPlan, me: Machine, weed: str) -> ProcessSpec:
    alone = len(plan.masters) == 1
    # A lone master starts from no Raft state (-resumeState=false): its leader admits any master
    # that dials it (SeaweedFS's AdmitRaftPeer), so one of the three masters of a cluster that
    # shrank to two machines, still running for the seconds until its machine stops it, joins
    # its Raft and then leaves it without a quorum; resumed, that peer would stay in its
    # configuration for good. All a lone master's state holds is the highest volume id, which
    # the volume servers' heartbeats report again.
    return ProcessSpec("master", (
        weed, "master", f"-ip={me.addr}", f"-port={MASTER_PORT}", "-mdir=.",
        f"-peers={'none' if alone else plan.master_list}",
        f"-defaultReplication={plan.default_replication}",
        f"-volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}", f"-electionTimeout={MASTER_ELECTION_TIMEOUT}",
        *(("-resumeState=false",) if alone else ("-raftHashicorp",)),
    ), cwd="master")


def _volume(plan: ClusterPlan, me: Machine, weed: str) -> ProcessSpec:
    return ProcessSpec("volume", (
        weed, "volume", f"-ip={me.addr}", f"-port={VOLUME_PORT}", "-dir=.", f"-max={VOLUME_SLOTS}",
        f"-master={plan.master_list}", f"-dataCenter={me.site}", f"-rack={me.name}",
        f"-minFreeSpace={MIN_FREE_SPACE}",
    ), cwd="volume")


def _filer(plan: ClusterPlan, me: Machine, weed: str) -> ProcessSpec:
    return ProcessSpec("filer", (
        weed, "filer", f"-ip={me.addr}", f"-port={FILER_PORT}", f"-master={plan.master_list}",
        f"-defaultReplicaPlacement={plan.default_replication}",
        f"-dataCenter={me.site}", f"-rack={me.name}",
        "-s3", f"-s3.port={S3_PORT}",
        # Its local sockets in its own directory, not /tmp/seaweedfs-{filer,s3}-PORT.sock: a
        # path shared by every filer of a host (the simulator's machines) lets one filer's
        # start remove another's socket, and the loser exits ("bind: address already in use").
        "-localSocket=filer.sock", "-s3.localSocket=s3.sock",
    ), cwd="filer", files={"filer.toml": filer_toml(plan.etcd, plan.etcd_prefix, plan.etcd_tls, plan.etcd_login)})


def storage_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "storage"
