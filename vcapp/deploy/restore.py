"""Read a backup (vcapp/deploy/backup.py) and put its cluster back on a newly founded one.

`open_backup` decrypts with the admin's age identity and keeps only the members a backup
has (anyone holding the public key can make an archive: nothing in it is trusted to name
its own paths). `put_back` runs on the founding machine of the new cluster, right after
`vcapp backup restore` founded it (with a cluster key of its own):

    1. the records: releases, builds, token hashes, settings, history, buckets; the secrets
       and the settings' credentials sealed under the new cluster key
    2. each app's image into this machine's registry; the app's spec and its current
       release point at the copy (older releases keep their old references: rolling back
       to them needs a push)
    3. for apps with volumes: their writer keys taken (so no instance mounts an empty
       volume), the app specs written, end-user tokens bound to the apps' new records,
       each volume made and its files unpacked, the keys given back; then the placer
       starts the apps, on whatever machines join

A built-in bucket is made again with new keys (the old ones lived in the old storage; the app
rolls onto them) and its objects are put back. Not restored: the git repositories (the next `git push` makes them again, from the pusher's history),
images of releases before the current one.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder import registry
from builder.registry import DEFAULT_PORT as REGISTRY_PORT
from storage import guard
from storage.host import LocalHost, StorageError, weed_binary
from storage.snapshot import bucket_path, import_tree, import_volume
from storage.volumes import Volume, check_names
from vcapp import machine
from vcapp.deploy.backup import FORMAT
from vcapp.deploy.release_phase import renew_lease
from vcapp.errors import BadRequest, Unavailable, VcError
from vcapp.machine import NodeConfig
from vcapp.state import apps, bucketbackend, events, keys, releases, secrets, volumes
from vcapp.state.store import Store

# The members a backup holds; anything else in the archive is ignored.
MEMBERS = re.compile(r"manifest\.json|state\.json|images/[a-z0-9-]{1,63}\.tar"
                     r"|volumes/[a-z0-9-]{1,63}/[a-z0-9][a-z0-9-]{0,40}\.tar|buckets/[a-z0-9-]{1,63}\.tar")
MAX_JSON = 512 << 20  # bytes of manifest or state: far above any cluster's records
WRITER_LEASE_S = 15
PUSH_TIMEOUT = 900.0
# The daemon `cluster init` started brings this machine's registry up (its password file, then
# the process) in its first ticks, which a loaded machine may take seconds to reach: a push
# refused or unanswered meanwhile is tried again for this long.
REGISTRY_WAIT_S = 90.0
REGISTRY_RETRY_S = 2.0
RESTORE_INSTANCE = volumes.release_phase_instance("restore")
# Record families put back as they were (the apps, volumes and cluster record have steps of their own).
AS_THEY_WERE = (keys.SECRETS, keys.RELEASES, keys.BUILDS, keys.ADMIN_TOKENS, keys.BUCKETS,
                keys.BUCKET_BACKEND, keys.BUILD_PROXY, keys.BUILD_NO_PROXY, keys.REGISTRIES, keys.BACKUP_SCHEDULE,
                keys.EVENTS)
Say = Callable[[str], None]


@dataclass
class Backup:
    dir: Path
    manifest: dict
    state: dict[str, list[dict]]

    @property
    def cluster(self) -> dict:
        rows = self.state.get(keys.CLUSTER) or []
        return (rows[0]["value"] if rows else None) or {}


def open_backup(path: Path, identity: Path, work: Path) -> Backup:
    """Decrypt `path` with the age identity file into `work` (the known members only)."""
    if not path.is_file():
        raise BadRequest(f"{path}: no such backup file")
    if not identity.is_file():
        raise BadRequest(f"{identity}: no such key file; give the age identity the backup was made for "
                         "(the file `age-keygen -o` wrote)")
    age = subprocess.Popen(["age", "-d", "-i", str(identity), str(path)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=age.stdout, mode="r|") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if not member.isfile() or not MEMBERS.fullmatch(name):
                    continue
                dest = work / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                with open(dest, "wb") as out:
                    src = tar.extractfile(member)
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
    except tarfile.TarError as e:
        broken: Exception | None = e
    else:
        broken = None
    finally:
        age.stdout.close()
        rc = age.wait()
    if rc != 0:
        err = [line for line in age.stderr.read().decode(errors="replace").splitlines() if "age: error:" in line]
        why = err[0].split("age: error:", 1)[1].strip() if err else f"age exit {rc}"
        raise BadRequest(f"{path} could not be decrypted with {identity}: {why} (is it the key the backup was "
                         "made for?)")
    if broken is not None:
        raise BadRequest(f"{path} is not a vcapp backup: {broken}")
    return _load(work)


def _load(work: Path) -> Backup:
    try:
        manifest = _json(work / "manifest.json")
        state = _json(work / "state.json")
    except (OSError, ValueError) as e:
        raise BadRequest(f"the backup is incomplete or damaged ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BadRequest(f"the backup's format is {manifest.get('format') if isinstance(manifest, dict) else '?'}; "
                         f"this vcapp reads format {FORMAT}")
    if not isinstance(state, dict) or not all(isinstance(rows, list) for rows in state.values()):
        raise BadRequest("the backup is damaged: its state is not what a backup holds")
    return Backup(work, manifest, state)


def _json(path: Path):
    if path.stat().st_size > MAX_JSON:
        raise ValueError(f"{path.name} is over {MAX_JSON >> 20} MB")
    return json.loads(path.read_text())


def put_back(store: Store, cfg: NodeConfig, backup: Backup, say: Say) -> dict:
    """Steps 1-3 above on this (founding) machine; returns what was restored."""
    rows = {prefix: [r for r in backup.state.get(prefix) or [] if _ours(r, prefix)] for prefix in keys.BACKED_UP}
    for prefix in AS_THEY_WERE:
        for r in rows[prefix]:
            store.put(r["key"], secrets.sealed(prefix, r["value"]))
    say(f"records: {len(rows[keys.APPS])} apps, {len(rows[keys.RELEASES])} releases, "
        f"{len(rows[keys.ADMIN_TOKENS])} admin and {len(rows[keys.APP_TOKENS])} app tokens, "
        f"{len(rows[keys.SECRETS])} apps' secrets")
    specs = {keys.name_of(r["key"], keys.APPS): dict(r["value"]) for r in rows[keys.APPS]
             if isinstance(r["value"], dict) and _named_well(keys.name_of(r["key"], keys.APPS), say)}
    images = {app: _push_image(store, cfg, backup, app, spec, say) for app, spec in specs.items()
              if (backup.dir / "images" / f"{app}.tar").is_file()}
    vols = [r["value"] for r in rows[keys.VOLUMES] if isinstance(r["value"], dict) and r["value"].get("app") in specs
            and _named_well(f"{r['value']['app']}/{r['value'].get('name')}", say)]
    lease = store.grant(WRITER_LEASE_S)
    stop = threading.Event()
    threading.Thread(target=renew_lease, args=(store, lease, WRITER_LEASE_S, stop), daemon=True).start()
    writers = volumes.EtcdWriters(store, lease)
    try:
        for v in vols:
            guard.take_writer(writers, v["app"], v["name"], cfg.name, RESTORE_INSTANCE)
        for app, spec in specs.items():
            store.put(keys.app(app), spec)
        _tokens(store, rows)
        for v in vols:
            _volume(store, cfg, backup, v, say)
            guard.release_writer(writers, v["app"], v["name"], cfg.name, RESTORE_INSTANCE)
    except StorageError as e:
        raise Unavailable(f"the volumes could not be restored: {e}; run the restore again on blank machines") from None
    finally:
        stop.set()
        store.revoke(lease)
    made = [_bucket(store, cfg, backup, r["value"], say) for r in rows[keys.BUCKETS]
            if isinstance(r["value"], dict) and r["value"].get("app") in specs
            and r["value"].get("backend") == bucketbackend.BUILTIN]
    for app in sorted(specs):
        events.record(store, "restore", f"app {app} restored from the backup of "
                      f"{when_text(backup.manifest.get('created_at'))}", app=app)
    return {"apps": sorted(specs), "images": sorted(a for a, ok in images.items() if ok),
            "volumes": [f"{v['app']}/{v['name']}" for v in vols], "buckets": [b for b in made if b]}


def _named_well(name: str, say: Say) -> bool:
    """An app name, or app/volume, as vcapp makes them; a backup naming others (not one
    vcapp wrote) has them left out."""
    app, _, volume = name.partition("/")
    try:
        apps.app_name(app)
        if volume:
            check_names(app, volume)
    except (VcError, StorageError):
        say(f"warning: {name!r} in the backup is not a name vcapp makes; left out")
        return False
    return True


def _tokens(store: Store, rows: dict[str, list[dict]]) -> None:
    """End-user tokens, bound to their app's new generation (vcapp/state/apptokens.py: the
    create revision of the app's record, which the restore made anew). A token of an older
    generation of its app opened nothing before the backup and is left out."""
    was = {keys.name_of(r["key"], keys.APPS): r.get("create_revision") for r in rows[keys.APPS]}
    now = {e.key: e.create_revision for e in store.list(keys.APPS)}
    for r in rows[keys.APP_TOKENS]:
        token = r["value"] if isinstance(r["value"], dict) else {}
        app = token.get("app")
        if app in was and was[app] and token.get("app_generation") == was[app] and keys.app(app) in now:
            store.put(r["key"], {**token, "app_generation": now[keys.app(app)]})


def _bucket(store: Store, cfg: NodeConfig, backup: Backup, record: dict, say: Say) -> str:
    """Make an app's built-in bucket again (new keys: the old ones lived in the old storage;
    the app rolls onto them) and put its objects back. Its name, or "" when it failed."""
    app = record["app"]
    try:
        made = volumes.create_bucket(store, cfg, app, who="the restore")
        archive = backup.dir / "buckets" / f"{app}.tar"
        if archive.is_file():
            import_tree(volumes.storage_plan(store, cfg), LocalHost(cfg.name), bucket_path(made["bucket"]), archive,
                        machine.run_dir(), weed_binary())
    except (VcError, StorageError) as e:
        say(f"warning: the bucket of {app} was not restored: {getattr(e, 'message', e)}; `vcapp buckets create {app}`")
        return ""
    say(f"bucket {made['bucket']} of {app} made again with new keys, its objects back")
    return made["bucket"]


def _ours(row: dict, prefix: str) -> bool:
    """A row of the state really is of that family (a hand-made archive could name any key)."""
    key = row.get("key") if isinstance(row, dict) else None
    return isinstance(key, str) and key.startswith(prefix) and "\n" not in key and "value" in row


def _push_image(store: Store, cfg: NodeConfig, backup: Backup, app: str, spec: dict, say: Say) -> bool:
    """Load the app's saved image into this machine's registry and point the spec and the
    current release at it (by digest, as a pushed release is run). Whether it worked."""
    number = spec.get("release")
    target = f"{cfg.addr}:{REGISTRY_PORT}/apps/{app}:{number or 'restored'}"
    archive = backup.dir / "images" / f"{app}.tar"
    digestfile = archive.with_suffix(".digest")
    loaded = subprocess.run(["buildah", "pull", "-q", f"oci-archive:{archive}"], capture_output=True, text=True,
                            timeout=PUSH_TIMEOUT)
    pushed = None
    if loaded.returncode == 0:
        with tempfile.TemporaryDirectory(prefix="vcapp-restore-auth-") as tmp:
            # The machine credential for this registry, not the daemon's auth file: that one
            # is written by the registry loop, which may not have run yet.
            auth = registry.write_auth_file(Path(tmp) / "auth.json", [f"{cfg.addr}:{REGISTRY_PORT}"],
                                            machine.registry_credential())
            push = ["buildah", "push", "-q", "--tls-verify=false", "--authfile", str(auth), "--digestfile",
                    str(digestfile), loaded.stdout.strip().splitlines()[-1], f"docker://{target}"]
            deadline = time.monotonic() + REGISTRY_WAIT_S
            while True:
                pushed = subprocess.run(push, capture_output=True, text=True, timeout=PUSH_TIMEOUT)
                if pushed.returncode == 0 or time.monotonic() > deadline:
                    break
                time.sleep(REGISTRY_RETRY_S)
    if not pushed or pushed.returncode != 0 or not digestfile.is_file():
        why = (pushed.stderr if pushed else loaded.stderr).strip()[-300:]
        say(f"warning: the image of {app} could not be put in the registry ({why}); `git push` the app again")
        return False
    digest = digestfile.read_text().strip()
    record = {"image": target, "digest": digest}
    spec["image"] = releases.run_image(record)
    if isinstance(number, int):
        key = keys.release(app, number)
        old = store.value(key)
        if isinstance(old, dict):
            store.put(key, {**old, **record})
    say(f"image of {app} in the registry of {cfg.name}")
    return True


def _volume(store: Store, cfg: NodeConfig, backup: Backup, record: dict, say: Say) -> None:
    app, name, size_mb = record["app"], record["name"], int(record["size_mb"])
    try:
        volumes.create(store, cfg, app, name, size_mb, who="the restore")
    except VcError as e:
        raise StorageError(f"volume {app}/{name}: {e.message}") from None
    archive = backup.dir / "volumes" / app / f"{name}.tar"
    if not archive.is_file():
        say(f"warning: volume {app}/{name} is in the state but its files are not in the backup: it starts empty")
        return
    plan = volumes.storage_plan(store, cfg)
    import_volume(plan, LocalHost(cfg.name), Volume(app, name, size_mb), archive, machine.run_dir(), weed_binary())
    say(f"volume {app}/{name}: {archive.stat().st_size / 1e6:.1f} MB of files back")


def when_text(at) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at)) if isinstance(at, (int, float)) else "an unknown time"
