"""App volumes as the control plane sees them: records, the storage cluster's plan from the
members, and the glue the runtime uses to mount a volume for one instance.

    /vc/storage/enabled        {"since": t}: set by the first volume; from then on every machine
                               runs its SeaweedFS processes (vcapp/node/storage_loop.py). A
                               cluster without volumes spends nothing on storage.
    /vc/storage/state          {"code", "state": healthy|degraded, "live", "counted", "at",
                               "evacuated", "evacuating", "error", "failed_at"}: written by
                               the controller whenever the live machines or the storage drains
                               change; "counted" names the machines the rules count as up,
                               "error" says why the last pass failed (gone once one
                               finishes); "evacuated" lists the storage-drained machines with
                               no copy left, which then run no volume server
                               (storage/evacuate.py), "evacuating" the others with the count
                               of volumes still on each
    /vc/volumes/<app>/<name>   {app, name, size_mb, created_at}
    /vc/storage/writer/...     at most one writer machine per volume (storage/guard.py)
    /vc/buckets/<app>          {app, bucket, backend, endpoint?, kind?, created_at}: the app's S3
                               bucket; its keys are app secrets (AWS_ACCESS_KEY_ID,
                               AWS_SECRET_ACCESS_KEY), BUCKET_NAME is in its env. On the built-in
                               storage every instance gets AWS_ENDPOINT_URL_S3 of its own machine;
                               on an external S3 service (vcapp/state/bucketbackend.py) the service's URL,
                               from the spec's s3_endpoint, and the storage cluster stays off.

The storage engine itself (processes, path rules, mounts, degrade and heal) is storage/;
this module only feeds it cluster state and never runs SeaweedFS commands in a loop.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

from storage import buckets, evacuate, external, findable, guard, mount, replication, storaged
from storage import volumes as engine
from storage.host import LocalHost, StorageError, StorageUnreachable, weed_binary
from storage.plan import S3_PORT, ClusterPlan, EtcdLogin, EtcdTLS, Machine, plan_cluster, storage_dir
from vcapp import etcdtls
from vcapp.errors import BadRequest, Conflict, NotFound, Unavailable
from vcapp.machine import NodeConfig, data_dir, run_dir
from vcapp.state import apps, bucketbackend, etcdauth, events, keys, membership, secrets
from vcapp.state.store import Store, absent, delete_op, put_op, unchanged

log = logging.getLogger("vcapp.storage")

ENABLED, STATE, VOLUMES, BUCKETS = keys.STORAGE_ENABLED, keys.STORAGE_STATE, keys.VOLUMES, keys.BUCKETS
# The controller lowers the rules seconds after a machine is lost (one weed shell, which waits
# for the storage's new master leader when the old one was on that machine): 30 s is long.
WRITABLE_WAIT_S = 30.0
WRITABLE_POLL_S = 0.5
DEFAULT_SIZE_MB = 1024
# The first volume starts the storage cluster: masters elect a leader (~5 s), volume servers
# and filers register. A minute covers a loaded 2-core machine; beyond it something is wrong.
FIRST_START_TIMEOUT = 90.0
RECORD_ATTEMPTS = 5  # a volume's record raced by the admin and its app's first instance
UNREACHABLE_RETRY_S = 2.0  # the storage agent restarts a dead weed process within ~2 s
T = TypeVar("T")


def storage_enabled(store: Store) -> bool:
    return store.get(ENABLED) is not None


def storage_plan(store: Store, cfg: NodeConfig, alive: set[str] | None = None) -> ClusterPlan:
    """The SeaweedFS plan every machine derives alike from the members and etcd's endpoints
    (`alive`: the live machines, when the caller has just read them)."""
    machines = [Machine(name, r["site"], r["addr"]) for name, r in membership.node_records(store).items()]
    alive = membership.alive_machines(store) if alive is None else alive
    order = etcd_order(cfg.store_endpoints(), cfg.addr, {m.addr for m in machines if m.name in alive})
    tls, login = filer_etcd_access(cfg.store_endpoints())
    state = store.value(STATE)
    evacuated = frozenset(state.get("evacuated") or ()) if isinstance(state, dict) else frozenset()
    return plan_cluster(machines, order, keys.SEAWEEDFS, tls, login, volume_off=evacuated)


def filer_etcd_access(endpoints: list[str]) -> tuple[EtcdTLS | None, EtcdLogin | None]:
    """The filers reach etcd as this machine: its certificate when etcd speaks TLS, and its
    etcd login when etcd has authentication on (vcapp/state/etcdauth.py)."""
    if not any(e.startswith("https://") for e in endpoints):
        return None, None
    tls = etcdtls.paths(data_dir())
    login = etcdauth.load(tls.auth)
    return (EtcdTLS(ca=str(tls.ca), cert=str(tls.cert), key=str(tls.key)),
            EtcdLogin(login.user, login.password) if login else None)


def etcd_order(endpoints: list[str], own_addr: str, alive_addrs: set[str]) -> list[str]:
    """host:port of the etcd members for a filer, the one it must reach first in front: a
    starting filer checks only the first server (SeaweedFS etcd store: Status(servers[0])) and
    exits if that one is down. This machine's own member if it has one (stable: no restart of
    the filer when another machine dies), else the first live member."""
    hosts = sorted(urlparse(u).netloc for u in endpoints)
    if not hosts:
        return []
    first = next((h for h in hosts if h.rsplit(":", 1)[0] == own_addr), None) or next(
        (h for h in hosts if h.rsplit(":", 1)[0] in alive_addrs), hosts[0])
    return [first] + [h for h in hosts if h != first]


def live_sites(store: Store, alive: set[str] | frozenset[str] | None = None) -> list[str]:
    """The site of every live machine (`alive`, or those with a lease) that keeps app data
    (not one whose storage is drained)."""
    alive = set(membership.alive_machines(store) if alive is None else alive) - storage_drained(store)
    return [r["site"] for name, r in membership.node_records(store).items() if name in alive]


def storage_drained(store: Store) -> set[str]:
    """Machines drained with their storage (`vcapp node drain --storage`)."""
    return {name for name, rec in membership.drained_machines(store).items() if rec.get("storage")}


def drain_storage(store: Store, name: str, who: str) -> dict:
    """Drain machine `name` with its copies of app data, when the live machines left can hold
    every copy the data keeps; else Conflict, and nothing changes."""
    if store.get(keys.node(name)) is None:
        raise NotFound(f"no machine named {name!r}; `vcapp nodes` lists them")
    records = membership.node_records(store)
    keeping = membership.alive_machines(store) - storage_drained(store) - {name}
    sites = [records[m]["site"] for m in sorted(keeping) if m in records]
    want = replication.TARGET_COPIES
    if not evacuate.room_for(sites, want):
        raise Conflict(f"the machines left ({', '.join(sorted(keeping)) or 'none'}) cannot hold {want} copies of "
                       f"the app data on {name}: it needs {want} live machines besides {name}. Join a machine "
                       f"first, or drain without --storage (the data stays on {name}, which keeps running)")
    return membership.drain(store, name, who, storage=True)


def list_volumes(store: Store, app: str | None = None) -> list[dict]:
    return [e.value for e in store.list(f"{VOLUMES}{app}/" if app else VOLUMES) if e.value]


def get_volume(store: Store, app: str, name: str) -> dict | None:
    return store.value(keys.volume(app, name))


def check_request(store: Store, app: str, name: str, size_mb: int) -> dict | None:
    """Refuse a bad volume request before anything starts; returns the existing record."""
    try:
        engine.check_names(app, name)
    except StorageError as e:
        raise BadRequest(str(e)) from None
    apps.parse_volume_size(size_mb)
    if store.get(keys.app(app)) is None:
        raise NotFound(f"no app {app}; create it first (`vcapp apps create {app}` or a git push)")
    old = get_volume(store, app, name)
    _check_size(old, app, name, size_mb)
    return old


def _check_size(old: dict | None, app: str, name: str, size_mb: int) -> None:
    """A volume grows, never shrinks, once someone gave its size: one its first instance made
    at the default size (the app named no size) takes any size given later."""
    if old and old["size_mb"] > size_mb and not old.get("default_size"):
        raise BadRequest(f"volume {app}/{name} is {old['size_mb']} MB; it can grow, not shrink "
                         f"(data beyond {size_mb} MB would be lost)")


def create(store: Store, cfg: NodeConfig, app: str, name: str, size_mb: int | None, who: str = "admin",
           first_use: bool = False) -> dict:
    """Create (or resize) volume NAME of APP on the replicated storage, starting the storage
    cluster first if this is the cluster's first volume; idempotent. A new size of an existing
    volume rolls the app's instances, in the transaction that records it: a weed mount takes its
    quota when it starts. `first_use`: an instance needs the volume and nobody created it; a
    record made meanwhile is the one it gets. `size_mb` None: the size nobody gave
    (DEFAULT_SIZE_MB), which a size given later replaces."""
    default = size_mb is None
    size_mb = DEFAULT_SIZE_MB if default else size_mb
    if first_use and (old := get_volume(store, app, name)):
        return old
    check_request(store, app, name, size_mb)
    try:
        _on_storage(store, cfg, lambda plan: engine.create_volume(plan, LocalHost(cfg.name), app, name, size_mb,
                                                                  live_sites(store), weed_binary()))
    except StorageError as e:
        raise Unavailable(f"could not create volume {app}/{name}: {e}") from None
    return save_record(store, app, name, size_mb, default, who, first_use)


def save_record(store: Store, app: str, name: str, size_mb: int, default: bool, who: str,
                first_use: bool = False) -> dict:
    """Record volume NAME of APP at `size_mb` once the storage holds it (`default`: the size
    nobody gave; `first_use`: yield to any record made meanwhile); a new size rolls the app."""
    key = keys.volume(app, name)
    for _ in range(RECORD_ATTEMPTS):
        entry = store.get(key)
        old = entry.value if entry else None
        if old and first_use:
            return old  # made (or sized) by someone else while the storage was readied
        _check_size(old, app, name, size_mb)
        record = {"app": app, "name": name, "size_mb": size_mb, "default_size": default,
                  "created_at": (old or {}).get("created_at") or time.time()}
        guard = unchanged(key, entry.mod_revision) if entry else absent(key)
        if old and old["size_mb"] != size_mb:
            return dict(record, rolled=_record_resize(store, app, name, old["size_mb"], record, guard, who))
        if old == record or store.txn([guard], [put_op(key, record)]):
            if not old:
                events.record(store, "volume", f"volume {app}/{name} created ({size_mb} MB) by {who}", app=app)
            return record
    raise Conflict(f"volume {app}/{name} kept changing while being created; try again")


def _record_resize(store: Store, app: str, name: str, was_mb: int, record: dict, guard: dict, who: str) -> bool:
    """Put the resized record and, when the app mounts the volume, roll its instances with it;
    whether they roll."""
    said = f"Resize volume {name} from {was_mb} MB to {record['size_mb']} MB"

    def mounts(spec: dict) -> bool:
        return any(v.get("source") == name for v in spec.get("volumes") or [])

    def roll(old: dict, new: dict) -> tuple[dict, list[dict], list[dict]]:
        if not mounts(old):
            return new, [guard], []
        new, guards, ops = apps.rolled(store, app, old, new, said, who)
        return new, [guard, *guards], ops

    spec = apps.update_app(store, app, lambda spec: spec, extra_ops=[put_op(keys.volume(app, name), record)], roll=roll)
    events.record(store, "volume", f"volume {app}/{name} resized to {record['size_mb']} MB by {who} "
                                   f"(it was {was_mb} MB)", app=app)
    return mounts(spec)


def _on_storage(store: Store, cfg: NodeConfig, act: Callable[[ClusterPlan], T]) -> T:
    """act(plan) once the storage cluster answers, starting it first if this is the cluster's
    first volume or bucket. `act` is idempotent: while the cluster settles a filer or master
    may restart under it (a crash its storage agent repairs in seconds, a plan that changed),
    so an unreachable process is waited for again, for up to FIRST_START_TIMEOUT in all."""
    store.txn([absent(ENABLED)], [put_op(ENABLED, {"since": time.time()})])
    deadline = time.monotonic() + FIRST_START_TIMEOUT
    while True:
        plan = storage_plan(store, cfg)
        storaged.wait_ready(plan, LocalHost(cfg.name), max(deadline - time.monotonic(), UNREACHABLE_RETRY_S))
        try:
            return act(plan)
        except StorageUnreachable:
            if time.monotonic() > deadline:
                raise
            time.sleep(UNREACHABLE_RETRY_S)


def create_bucket(store: Store, cfg: NodeConfig | None, app: str, who: str = "admin") -> dict:
    """Give APP its S3 bucket and keys (idempotent: existing keys are kept), on the external S3
    service when one is set (vcapp/state/bucketbackend.py), else on the built-in storage, which the
    first bucket starts. The instances roll onto the new environment."""
    apps.app_name(app)
    if store.get(keys.app(app)) is None:
        raise NotFound(f"no app {app}; create it first (`vcapp apps create {app}` or a git push)")
    backend = store.get(keys.BUCKET_BACKEND)
    setting = backend.value if backend else None
    old = store.value(keys.bucket(app))
    if old and bucketbackend.location(setting) != _location(old):
        raise Conflict(f"app {app} already has bucket {old['bucket']} on {bucketbackend.describe(old)}; buckets stay where "
                       "they were made")
    if setting:
        env, placed = _external_bucket(store, setting, app, old)
    else:
        env, placed = _builtin_bucket(store, cfg, app), {"backend": bucketbackend.BUILTIN}
    bucket, endpoint = env["BUCKET_NAME"], placed.get("endpoint")
    app_env = {"BUCKET_NAME": bucket, **({"AWS_REGION": env["AWS_REGION"]} if env.get("AWS_REGION") else {})}
    apps.update_app(store, app, lambda spec: _with_bucket(spec, bucket, endpoint, app_env))
    secrets.set_secrets(store, app, {"AWS_ACCESS_KEY_ID": env["AWS_ACCESS_KEY_ID"],
                                     "AWS_SECRET_ACCESS_KEY": env["AWS_SECRET_ACCESS_KEY"]})
    record = {"app": app, "bucket": bucket, **placed, "created_at": (old or {}).get("created_at") or time.time()}
    if not store.txn([unchanged(keys.BUCKET_BACKEND, backend.mod_revision if backend else 0)],
                     [put_op(keys.bucket(app), record)]):
        raise Conflict(f"the bucket backend changed while the bucket of {app} was made; "
                       f"`vcapp buckets backend show`, then create it again")
    if not old:
        events.record(store, "bucket", f"bucket {bucket} created for app {app} on {bucketbackend.describe(record)} by {who}", app=app)
    return record


def _builtin_bucket(store: Store, cfg: NodeConfig | None, app: str) -> dict[str, str]:
    if cfg is None:
        raise Unavailable("this machine has no node config; ask another machine's API")
    try:
        return _on_storage(store, cfg, lambda plan: buckets.create_bucket(plan, LocalHost(cfg.name), app,
                                                                           live_sites(store), weed_binary()))
    except StorageError as e:
        raise Unavailable(f"could not create the bucket of {app}: {e}") from None


def _external_bucket(store: Store, setting: dict, app: str, old: dict | None) -> tuple[dict[str, str], dict]:
    """The bucket and a key only it opens on the external service; the storage cluster stays off."""
    svc = bucketbackend.service(setting)
    try:
        bucket = external.bucket_name(setting.get("bucket_prefix") or "", app)
    except external.BadSetting as e:
        raise BadRequest(str(e)) from None
    kept = secrets.values_for(store, app) if old else {}
    current = ({"access_key": kept["AWS_ACCESS_KEY_ID"], "secret_key": kept["AWS_SECRET_ACCESS_KEY"]}
               if kept.get("AWS_ACCESS_KEY_ID") and kept.get("AWS_SECRET_ACCESS_KEY") else None)
    try:
        external.ensure_bucket(svc, bucket)
        key = external.ensure_app_key(svc, bucket, current)
    except StorageError as e:
        raise bucketbackend.BadGateway(f"could not create the bucket of {app} on {svc.endpoint}: {e}") from None
    env = {"AWS_ACCESS_KEY_ID": key["access_key"], "AWS_SECRET_ACCESS_KEY": key["secret_key"],
           "AWS_ENDPOINT_URL_S3": svc.endpoint, "BUCKET_NAME": bucket, "AWS_REGION": svc.region}
    return env, {"backend": bucketbackend.EXTERNAL, "endpoint": svc.endpoint, "kind": svc.kind}


def _with_bucket(spec: dict, bucket: str, endpoint: str | None, env: dict[str, str]) -> dict:
    """The spec of an app with a bucket: `s3_endpoint` is the external service every instance
    uses; without it each instance uses its own machine's gateway (vcapp/node/runtime_loop.py)."""
    out = dict(spec, bucket=bucket, env={**(spec.get("env") or {}), **env})
    if endpoint:
        out["s3_endpoint"] = endpoint
    else:
        out.pop("s3_endpoint", None)
    return out


def _location(record: dict) -> tuple[str, str] | None:
    """(endpoint, bucket prefix) of a bucket record, None on the built-in storage."""
    if record.get("backend", bucketbackend.BUILTIN) == bucketbackend.BUILTIN:
        return None
    return record["endpoint"], record["bucket"][: len(record["bucket"]) - len(record["app"])]


def list_buckets(store: Store) -> list[dict]:
    """Every app's bucket record; records from before external backends are on the built-in storage."""
    return [{"backend": bucketbackend.BUILTIN, **e.value} for e in store.list(BUCKETS) if e.value]


def s3_endpoint(addr: str) -> str:
    """The S3 gateway of the machine at `addr` (every machine runs one): what its instances use."""
    return f"http://{addr}:{S3_PORT}"


# ---- the runtime's side: mount a volume for one instance ------------------------------


class EtcdWriters:
    """storage.guard's WriterStore on etcd: the writer record of app/volume is the key
    keys.storage_writer(app, volume), and lives and dies with this node's lease."""

    def __init__(self, store: Store, lease: int):
        self.store, self.lease = store, lease

    @staticmethod
    def _key(name: str) -> str:
        return keys.STORAGE_WRITERS + name

    def get(self, name: str) -> str | None:
        value = self.store.value(self._key(name))
        return None if value is None else json.dumps(value, sort_keys=True)

    def put_if_absent(self, name: str, value: str) -> bool:
        key = self._key(name)
        return self.store.txn([absent(key)], [put_op(key, json.loads(value), lease=self.lease)])

    def delete_if_equal(self, name: str, value: str) -> bool:
        key = self._key(name)
        entry = self.store.get(key)
        if entry is None or json.dumps(entry.value, sort_keys=True) != value:
            return False
        return self.store.txn([unchanged(key, entry.mod_revision)], [delete_op(key)])


def mount_path(base: Path, app: str, name: str) -> Path:
    return Path(base) / "volumes" / app / name


# The writer records of a release command or a one-off (vcapp/deploy/release_phase.py) name it so:
# the runtime's clean-up leaves its mounts alone, the command gives them back itself.
RELEASE_PHASE_INSTANCE = "release-phase-"


def release_phase_instance(container: str) -> str:
    return f"{RELEASE_PHASE_INSTANCE}{container}"


def give_back(store: Store, cfg: NodeConfig, base: Path, app: str, source: str, instance: str, lease: int) -> None:
    """Unmount APP's volume SOURCE here and give up the writer key INSTANCE holds (the end of
    a release phase); a key already gone (its lease ended) is fine."""
    mount.stop_mount(run_dir(), app, source, mount_path(base, app, source))
    guard.release_writer(EtcdWriters(store, lease), app, source, cfg.name, instance)


def mount_for_instance(store: Store, cfg: NodeConfig, lease: int, base: Path, app: str, instance: str,
                       source: str, size_mb: int | None) -> str:
    """Mount APP's volume SOURCE here for INSTANCE (creating the volume on first use, with the
    size vcapp.toml gives) and return the host path to bind-mount. Raises StorageError."""
    record = get_volume(store, app, source)
    if record is None:
        record = create(store, cfg, app, source, size_mb, who=f"the first instance on {cfg.name}", first_use=True)
    alive = membership.alive_machines(store)
    plan = storage_plan(store, cfg, alive)
    host = LocalHost(cfg.name)
    path = mount_path(base, app, source)
    entry = mount.mount_entry(path)
    if entry and entry["fstype"] in mount.FUSE_TYPES:
        try:
            mount.verify_mounted(path)
        except StorageError:  # its weed mount died (a reboot, a crash): mount afresh
            mount.unmount_volume(path)
    mounted = guard.mount_for_writing(EtcdWriters(store, lease), plan, host, app, source, instance, path,
                                      run_dir(), weed_binary(), size_mb=record["size_mb"],
                                      log_dir=storage_dir(base) / "log")
    # the app may read its data the moment it starts: not before a master can locate it all
    findable.wait_findable(plan, host, engine.collection(app, source), alive)
    if not wait_writable(store, alive):
        log.warning("volume %s of %s: new writes still ask %s copies with %d machine(s) alive after %.0fs; "
                    "starting the app anyway, its writes may hang until the controller lowers the count "
                    "(`vcapp events`: storage degraded; the controller's log: storage replication)",
                    source, app, copies_asked(store), len(alive), WRITABLE_WAIT_S)
    return str(mounted)


def copies_asked(store: Store) -> int | None:
    """How many copies the app data rules ask of a new write now, as the controller last set
    them (/vc/storage/state); None before it did."""
    code = (store.value(STATE) or {}).get("code")
    return replication.copies(code) if code else None


def wait_writable(store: Store, alive: list[str], timeout: float = WRITABLE_WAIT_S) -> bool:
    """Wait until the app data rules ask new writes for no more copies than the live machines
    can hold; whether they do. An instance moved here because its machine was lost starts
    once the controller has lowered them (node/storage_loop.py ReplicationLoop): the first
    write its weed mount sends before that asks for the old count, and SeaweedFS's filer
    retries that assignment with that count until its 30 s timeout, with every later write of
    the file queued behind it (the soak, bench/soak.py: the volume app answered again 1 s
    after its move and wrote nothing for 30 s more). Past `timeout` (the controller gone too,
    the storage shell failing) the instance starts anyway: its reads at least are served."""
    want = len(live_sites(store, set(alive)))
    deadline = time.monotonic() + timeout
    while (asked := copies_asked(store)) is not None and asked > want:
        if time.monotonic() >= deadline:
            return False
        time.sleep(WRITABLE_POLL_S)
    return True


def stop_mounts(base: Path, pairs: set[tuple[str, str]]) -> list[str]:
    """Kill the weed mounts here of these (app, volume) pairs at once (self-fencing: a machine
    that may have lost its volumes must not send one more write to the filer); the ones
    there were. No etcd: the machine is cut off when it does this."""
    return [f"{app}/{name}" for app, name in sorted(pairs)
            if mount.stop_mount(run_dir(), app, name, mount_path(base, app, name))]


def release_unused(store: Store, cfg: NodeConfig, base: Path, wanted: set[tuple[str, str]]) -> list[str]:
    """Unmount every volume mounted here that no instance here needs any more (`wanted`:
    (app, volume) pairs of this machine's assignments) and give up its writer key."""
    released = []
    root = Path(base) / "volumes"
    for path in sorted(root.glob("*/*")) if root.is_dir() else []:
        app, name = path.parent.name, path.name
        if (app, name) in wanted or mount.mount_entry(path) is None:
            continue
        key = keys.storage_writer(app, name)
        entry = store.get(key)
        holder = (entry.value or {}) if entry else {}
        if holder.get("node") == cfg.name and str(holder.get("instance", "")).startswith(RELEASE_PHASE_INSTANCE):
            continue  # a release command runs with it: release_phase.py gives it back
        mount.stop_mount(run_dir(), app, name, path)
        if entry and holder.get("node") == cfg.name:
            store.txn([unchanged(key, entry.mod_revision)], [delete_op(key)])
        released.append(f"{app}/{name}")
    return released
