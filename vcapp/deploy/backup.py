"""A backup of the whole cluster, in one file only the admin can open.

    vcapp-backup-<cluster>-<UTC time>.tar.age   age-encrypted (X25519) to the admin's key;
                                                 the cluster keeps no key that opens it
      manifest.json     format, cluster name and domain, when, the etcd revision, what is in
      state.json        every key of keys.BACKED_UP as it was at that one revision: apps,
                        releases, secrets, token hashes, volumes, settings, history; what
                        etcd keeps sealed with the cluster key is here open (secrets.opened),
                        so the cluster key itself never leaves the machines
      images/<app>.tar  the image each app runs (OCI archive), from the cluster's registries
      volumes/<app>/<name>.tar   each volume's files (storage/snapshot.py)
      buckets/<app>.tar the objects of each app's built-in bucket

A restore (vcapp/deploy/restore.py) founds a new cluster from it on new machines. The
backup runs on the machine whose API is asked (or the controller, on the schedule); its
work files live under that machine's data directory and are gone when it returns.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from builder.registry import DEFAULT_PORT as REGISTRY_PORT
from storage.host import LocalHost, StorageError, weed_binary
from storage.snapshot import bucket_path, export_tree, export_volume
from storage.volumes import Volume
from vcapp import machine
from vcapp.errors import Unavailable
from vcapp.machine import NodeConfig
from vcapp.state import backups, bucketbackend, keys, membership, secrets, volumes
from vcapp.state.store import Store

FORMAT = 1
IMAGE_TIMEOUT = 900.0  # s: pulling and writing out one app's image
AGE_TIMEOUT = 7200.0
Say = Callable[[str], None]


@dataclass
class Manifest:
    format: int
    cluster: str
    domain: str
    created_at: float
    revision: int
    apps: list[str] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)  # app -> the image it ran
    volumes: list[dict] = field(default_factory=list)  # {"app", "name", "size_mb", "bytes"}
    buckets: list[dict] = field(default_factory=list)  # built-in ones: {"app", "bucket", "bytes"}
    skipped: list[str] = field(default_factory=list)  # what could not be kept, and why

    def to_dict(self) -> dict:
        return asdict(self)


def file_name(cluster: str, at: float) -> str:
    return f"vcapp-backup-{cluster}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(at))}.tar.age"


def snapshot_state(store: Store) -> tuple[int, dict[str, list[dict]]]:
    """Every backed-up key family, all read at one etcd revision, sealed fields open."""
    revision = store.revision()
    return revision, {prefix: [{"key": e.key, "value": secrets.opened(prefix, e.value),
                                "create_revision": e.create_revision}
                               for e in store.list(prefix, revision=revision)] for prefix in keys.BACKED_UP}


def create(store: Store, cfg: NodeConfig, recipient: str, dest_dir: Path, say: Say) -> tuple[Path, Manifest]:
    """Write the cluster's backup, encrypted to `recipient`, into `dest_dir`; returns its path."""
    recipient = backups.check_recipient(recipient)
    if not machine.cluster_key():
        raise Unavailable("this machine has no cluster key to open the secrets with; ask another machine's API")
    revision, state = snapshot_state(store)
    cluster = (state[keys.CLUSTER][0]["value"] if state[keys.CLUSTER] else {}) or {}
    made = Manifest(FORMAT, cluster.get("name", ""), cluster.get("domain", ""), time.time(), revision)
    say(f"cluster state at etcd revision {revision}: "
        + ", ".join(f"{len(v)} {p.rstrip('/').rsplit('/', 1)[-1]}" for p, v in state.items() if v))
    work = Path(tempfile.mkdtemp(prefix="vcapp-backup-", dir=machine.data_dir()))
    try:
        (work / "images").mkdir()
        (work / "volumes").mkdir()
        (work / "state.json").write_text(json.dumps(state))
        registries = {f"{n['addr']}:{REGISTRY_PORT}" for n in membership.node_records(store).values() if n.get("addr")}
        for entry in state[keys.APPS]:
            spec = entry["value"] or {}
            app = keys.name_of(entry["key"], keys.APPS)
            made.apps.append(app)
            if spec.get("image"):
                _save_image(app, spec["image"], registries, work / "images" / f"{app}.tar", made, say)
        for entry in state[keys.VOLUMES]:
            _save_volume(store, cfg, entry["value"], work, made, say)
        for entry in state[keys.BUCKETS]:
            if (entry["value"] or {}).get("backend") == bucketbackend.BUILTIN:
                _save_bucket(store, cfg, entry["value"], work, made, say)
        (work / "manifest.json").write_text(json.dumps(made.to_dict(), indent=1))
        out = dest_dir / file_name(made.cluster or "cluster", made.created_at)
        _encrypt(work, recipient, out)
        say(f"backup written: {out.name}, {out.stat().st_size / 1e6:.1f} MB, encrypted to {recipient[:12]}...")
        return out, made
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _save_image(app: str, image: str, registries: set[str], dest: Path, made: Manifest, say: Say) -> None:
    """The app's image as an OCI archive: pulled from the cluster's registries (through their
    credentials), or from this machine's image store for an image given by name."""
    auth = machine.registry_auth_file()
    local, pulled_here = image, False
    if image.split("/", 1)[0] in registries:
        pulled_here = subprocess.run(["buildah", "inspect", "--type", "image", image], capture_output=True,
                                     timeout=IMAGE_TIMEOUT).returncode != 0
        argv = ["buildah", "pull", "-q", "--tls-verify=false", *(["--authfile", str(auth)] if auth.is_file() else []),
                image]
        pulled = subprocess.run(argv, capture_output=True, text=True, timeout=IMAGE_TIMEOUT)
        if pulled.returncode != 0:
            made.skipped.append(f"image of {app} ({image}): {_last(pulled.stderr)}")
            say(f"warning: the image of {app} could not be read: {_last(pulled.stderr)}")
            return
        local = pulled.stdout.strip().splitlines()[-1]
    try:
        out = subprocess.run(["buildah", "push", "-q", local, f"oci-archive:{dest}"], capture_output=True, text=True,
                             timeout=IMAGE_TIMEOUT)
    finally:
        if pulled_here:  # pulled only for the backup: not left to fill this machine's disk, backup after backup
            subprocess.run(["buildah", "rmi", local], capture_output=True, timeout=IMAGE_TIMEOUT)
    if out.returncode != 0:
        made.skipped.append(f"image of {app} ({image}): {_last(out.stderr)}")
        say(f"warning: the image of {app} is not in the backup: {_last(out.stderr)}")
        return
    made.images[app] = image
    say(f"image of {app}: {dest.stat().st_size / 1e6:.1f} MB")


def _save_volume(store: Store, cfg: NodeConfig, record: dict, work: Path, made: Manifest, say: Say) -> None:
    app, name, size_mb = record["app"], record["name"], int(record["size_mb"])
    dest = work / "volumes" / app / f"{name}.tar"
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        plan = volumes.storage_plan(store, cfg, membership.alive_machines(store))
        size = export_volume(plan, LocalHost(cfg.name), Volume(app, name, size_mb), dest, machine.run_dir(),
                             weed_binary())
    except StorageError as e:
        raise Unavailable(f"could not read volume {app}/{name}: {e}; the backup was not written") from None
    made.volumes.append({"app": app, "name": name, "size_mb": size_mb, "bytes": size})
    say(f"volume {app}/{name}: {size / 1e6:.1f} MB")


def _save_bucket(store: Store, cfg: NodeConfig, record: dict, work: Path, made: Manifest, say: Say) -> None:
    """A built-in bucket's objects (one on an external S3 service stays there: only its record
    and keys are in the backup)."""
    app, bucket = record["app"], record["bucket"]
    dest = work / "buckets" / f"{app}.tar"
    dest.parent.mkdir(exist_ok=True)
    try:
        plan = volumes.storage_plan(store, cfg, membership.alive_machines(store))
        size = export_tree(plan, LocalHost(cfg.name), bucket_path(bucket), dest, machine.run_dir(), weed_binary())
    except StorageError as e:
        raise Unavailable(f"could not read bucket {bucket}: {e}; the backup was not written") from None
    made.buckets.append({"app": app, "bucket": bucket, "bytes": size})
    say(f"bucket {bucket}: {size / 1e6:.1f} MB")


def _encrypt(work: Path, recipient: str, out: Path) -> None:
    """tar the work directory through `age -r` into `out` (written whole or not at all)."""
    part = out.with_name(out.name + ".part")
    tar = subprocess.Popen(["tar", "-C", str(work), "-cf", "-", "."], stdout=subprocess.PIPE)
    try:
        age = subprocess.run(["age", "-r", recipient, "-o", str(part)], stdin=tar.stdout, capture_output=True,
                             text=True, timeout=AGE_TIMEOUT)
    finally:
        tar.stdout.close()
        tar_rc = tar.wait()
    if age.returncode != 0 or tar_rc != 0:
        part.unlink(missing_ok=True)
        raise Unavailable(f"could not write the encrypted backup: {_last(age.stderr) or f'tar exit {tar_rc}'}")
    part.rename(out)


def _last(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][-300:] if lines else "no message"
