"""Destroying an app with everything it keeps, so that nothing of it opens an app made again
with its name: tokens, secrets, releases and repository (vcapp/state/apps.py `destroy`, the last
step), its volumes, its bucket and its release images.

Stored data goes only with a confirmation, as Heroku's `--confirm APP`: without it the
answer is 409 naming each volume and the bucket, and the command to run; nothing changes.

    decide      `decide(app, held, confirm)`, pure: refuse (409 / 400) or go on
    check       the stores of that data answer (the built-in storage: a master leader, this
                machine's volume server and filer; an external S3 service: its admin key
                works): 503 before anything changes when one does not
    stop        the spec is marked `destroying` with every count 0: the placer takes its
                instances off, the runtimes stop them and unmount its volumes; wait until no
                assignment and no live machine's writer key is left (STOP_TIMEOUT)
    volumes     each one's files, filer record, collection and rule; then its etcd record
    bucket      built-in: identity, objects, bucket, rule; external: objects, bucket, the
                app's key and user; then its etcd record
    images      every manifest of apps/<app> (the release digests and whatever its tags
                name) in the registry of every live machine, with the layer links
    app         apps.destroy: one etcd transaction, the app record last

Every step is idempotent and each record goes right after its data, so when a store fails
halfway the answer says what is left and the same command again finishes the job (the app
stays listed, marked destroying, with no instance). A registry of a machine that is down
cannot be cleaned: its copies are named in the answer; they hold images of a release no app
references (a new app of the name gets new digests) until the registry is garbage-collected.

The external bucket is deleted too, as Heroku deletes an add-on's data with the app: the
cluster made it for this app alone (<prefix><app>) and a new app of the name would get the
same bucket back with the old objects in it; `--confirm` names it before anything goes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from builder import registry as image_registry
from builder.build import CACHE_REPOSITORY
from storage import buckets as builtin_buckets
from storage import external, storaged
from storage import volumes as engine
from storage.host import LocalHost, StorageError, weed_binary
from vcapp import machine
from vcapp.errors import BadRequest, Conflict, Unavailable
from vcapp.machine import NodeConfig
from vcapp.state import apps, bucketbackend, events, instances, keys, membership, releases, volumes
from vcapp.state.store import Store, delete_op, unchanged

# The placer reacts within a second, a runtime stops a container in its stop timeout (10 s)
# and unmounts its volume right after; a minute covers a loaded 2-core machine.
STOP_TIMEOUT = 60.0
STOP_POLL = 0.5
STORAGE_CHECK_TIMEOUT = 10.0  # a running storage cluster answers in ms; 10 s covers a leader election
REGISTRY_PORT = image_registry.DEFAULT_PORT
IMAGE_REPOSITORY = "apps/{app}"


@dataclass(frozen=True)
class Held:
    """What an app keeps that destroying it deletes for good."""

    volumes: tuple[dict, ...] = ()
    bucket: dict | None = None

    def __bool__(self) -> bool:
        return bool(self.volumes or self.bucket)

    def describe(self) -> str:
        parts = [f"volume {v['app']}/{v['name']} ({v.get('size_mb', '?')} MB)" for v in self.volumes]
        if self.bucket:
            parts.append(f"bucket {self.bucket.get('bucket', self.bucket.get('app'))} on "
                         f"{bucketbackend.describe(self.bucket)}")
        return ", ".join(parts)


def decide(app: str, held: Held, confirm: str | None) -> None:
    """Pure: may APP be destroyed with what it `held` and the `confirm` given? Raises
    BadRequest for a confirmation naming another app, Conflict for a missing one."""
    if confirm is not None and confirm != app:
        raise BadRequest(f"--confirm {confirm!r} does not name app {app}; to destroy it: "
                         f"`vcapp apps destroy {app} --confirm {app}`")
    if held and confirm is None:
        raise Conflict(f"app {app} keeps data that destroying it deletes for good: {held.describe()}. "
                       f"Nothing was changed. To destroy it with its data: `vcapp apps destroy {app} --confirm {app}` "
                       f"(to stop it only: `vcapp scale {app} --count 0`)")


def held_by(store: Store, app: str) -> Held:
    volumes = tuple(e.value for e in store.list(keys.volume(app, "")) if e.value)
    bucket = store.value(keys.bucket(app))
    return Held(volumes, {"backend": bucketbackend.BUILTIN, **bucket} if bucket else None)


@dataclass
class Outcome:
    volumes: list[str] = field(default_factory=list)
    bucket: str | None = None
    objects: int | None = None
    images: list[str] = field(default_factory=list)
    images_left_on: list[str] = field(default_factory=list)


def destroy(store: Store, cfg: NodeConfig | None, app: str, confirm: str | None = None,
            repo_root: Path | None = None) -> dict:
    """Destroy APP and all it keeps (see the top of this module); what was removed."""
    app = apps.app_name(app)
    apps.get_app(store, app)  # the NotFound a person can act on
    held = held_by(store, app)
    decide(app, held, confirm)
    if held:
        _check_stores(store, cfg, app, held)
        _stop(store, app)
    done = Outcome()
    for vol in held.volumes:
        _delete_volume(store, cfg, vol)
        done.volumes.append(vol["name"])
    if held.bucket:
        done.bucket, done.objects = held.bucket.get("bucket", app), _delete_bucket(store, cfg, held.bucket)
    done.images, done.images_left_on = _delete_images(store, app)
    answer = apps.destroy(store, app, repo_root=repo_root)
    if held or done.images:
        left = (f"; the registries of {', '.join(done.images_left_on)} (down) may keep copies"
                if done.images_left_on else "")
        events.record(store, "app.destroyed", f"app {app}: deleted {held.describe() or 'no stored data'} and "
                                              f"{len(done.images)} image manifest(s){left}", app=app)
    return {**answer, "volumes": done.volumes, "bucket": done.bucket, "objects": done.objects,
            "images": len(done.images), "images_left_on": done.images_left_on}


# ---- steps ------------------------------------------------------------------------------------

def _check_stores(store: Store, cfg: NodeConfig | None, app: str, held: Held) -> None:
    """Refuse (503, nothing changed) when a store holding the app's data does not answer."""
    builtin = bool(held.volumes) or (held.bucket or {}).get("backend") == bucketbackend.BUILTIN
    try:
        if builtin:
            if cfg is None:
                raise Unavailable(f"app {app} was not destroyed, nothing changed: this machine has no node "
                                  "config to reach the storage with; ask another machine's API")
            storaged.wait_ready(volumes.storage_plan(store, cfg), LocalHost(cfg.name), STORAGE_CHECK_TIMEOUT)
        if held.bucket and held.bucket.get("backend") == bucketbackend.EXTERNAL:
            external.check_service(_external_service(store, held.bucket))
    except StorageError as e:
        raise Unavailable(f"app {app} was not destroyed, nothing changed: its data cannot be deleted now ({e}); "
                          "try again when the storage answers") from None


def _external_service(store: Store, record: dict) -> external.Service:
    setting = store.value(keys.BUCKET_BACKEND)
    if not setting or bucketbackend.location(setting) != (record["endpoint"], record["bucket"][: -len(record["app"])]):
        raise Conflict(f"bucket {record['bucket']} is on {record['endpoint']}, which is not the bucket backend any "
                       "more: the cluster has no key there to delete it; set that backend again "
                       "(`vcapp buckets backend set`), then destroy")
    return bucketbackend.service(setting)


def _stop(store: Store, app: str) -> None:
    """Take every instance off and wait until none runs and no live machine mounts a volume."""

    def stopped(spec: dict) -> dict:
        procs = spec.get("processes") or {}
        return dict(spec, destroying=spec.get("destroying") or time.time(), count=0,
                    processes={k: dict(p, count=0) for k, p in procs.items()})

    apps.update_app(store, app, stopped)
    deadline = time.monotonic() + STOP_TIMEOUT
    while True:
        alive = membership.alive_machines(store)
        running = [a.get("node") for a in instances.assignments(store, app).values()]
        mounted = [(e.value or {}).get("node") for e in store.list(keys.storage_writer(app))
                   if (e.value or {}).get("node") in alive]
        if not running and not mounted:
            return
        if time.monotonic() > deadline:
            raise Unavailable(f"app {app} is stopped (count 0, marked destroying) but after {STOP_TIMEOUT:.0f} s "
                              f"instances are still placed on {', '.join(sorted(set(running))) or '-'} and volumes "
                              f"mounted on {', '.join(sorted(set(mounted))) or '-'}; no data was deleted. Run the "
                              f"same destroy again when they are gone (`vcapp ps {app}`)")
        time.sleep(STOP_POLL)


def _delete_volume(store: Store, cfg: NodeConfig, vol: dict) -> None:
    app, name = vol["app"], vol["name"]
    try:
        engine.delete_volume(volumes.storage_plan(store, cfg), LocalHost(cfg.name), app, name, weed_binary())
    except StorageError as e:
        raise Unavailable(_halfway(app, f"volume {app}/{name}", e)) from None
    writer = keys.storage_writer(app, name)
    store.txn([], [delete_op(writer), delete_op(keys.volume(app, name))])
    events.record(store, "volume", f"volume {app}/{name} deleted with its app", app=app)


def _delete_bucket(store: Store, cfg: NodeConfig | None, record: dict) -> int | None:
    """Delete the bucket's data and its keys; the number of objects deleted where known."""
    app, bucket = record["app"], record.get("bucket", record["app"])
    entry = store.get(keys.bucket(app))
    objects = None
    try:
        if record.get("backend") == bucketbackend.EXTERNAL:
            svc = _external_service(store, record)
            external.delete_app_key(svc, bucket)  # its key stops first: nothing writes while it empties
            objects = external.delete_bucket(svc, bucket)
        else:
            builtin_buckets.delete_bucket(volumes.storage_plan(store, cfg), LocalHost(cfg.name), app, weed_binary())
    except StorageError as e:
        raise Unavailable(_halfway(app, f"bucket {bucket}", e)) from None
    if entry is not None:
        store.txn([unchanged(keys.bucket(app), entry.mod_revision)], [delete_op(keys.bucket(app))])
    events.record(store, "bucket", f"bucket {bucket} deleted with app {app}", app=app)
    return objects


def _delete_images(store: Store, app: str) -> tuple[list[str], list[str]]:
    """Delete apps/<app> and its build-step layers (cache/<app>) from the registry of every live
    machine: (digests of release images deleted, machines down)."""
    nodes = membership.node_records(store)
    if not nodes:
        return [], []
    alive = membership.alive_machines(store)
    digests = release_digests(store, app)
    credential = machine.registry_credential()
    deleted: list[str] = []
    for name in sorted(n for n in nodes if n in alive and nodes[n].get("addr")):
        address = f"{nodes[name]['addr']}:{REGISTRY_PORT}"
        try:
            for digest in image_registry.delete_repository(address, credential, IMAGE_REPOSITORY.format(app=app),
                                                           digests):
                if digest not in deleted:
                    deleted.append(digest)
            image_registry.delete_repository(address, credential, CACHE_REPOSITORY.format(app=app))
        except image_registry.RegistryError as e:
            raise Unavailable(_halfway(app, f"its images in the registry of {name}", e)) from None
    return deleted, sorted(n for n in nodes if n not in alive)


def release_digests(store: Store, app: str) -> list[str]:
    """The image digests the app's releases recorded (what its instances pulled)."""
    found = []
    for rec in releases.list_releases(store, app):
        digest = str(rec.get("digest") or "")
        if digest.startswith("sha256:") and digest not in found:
            found.append(digest)
    return found


def _halfway(app: str, what: str, e: Exception) -> str:
    return (f"app {app} is stopped and marked destroying, but {what} could not be deleted: {e}. Nothing of it "
            f"opens anything while the app record stays; run `vcapp apps destroy {app} --confirm {app}` again "
            "when it answers to finish")
