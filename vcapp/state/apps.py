"""Apps on the cluster: their specs in etcd, and the validation the API and the CLI share.

/vc/apps/<app> holds the spec the placer reads (placer/model.py), plus two fields of ours:
    "processes" {type: {"command": [...], "count": n}}: process types besides web (a Procfile's
                worker, clock, ...), each scaled on its own; `count` stays web's
    "release"   the release it runs (vcapp/state/releases.py: a push, a change of secrets or
                limits, a rollback each make one; 1 for --image apps, which have no records)
    "revision"  bumped by a restart, and by a change of an app without release records
The runtime sees one identity per container generation, `runtime_release(spec)` =
"<release>.<revision>": a change of either rolls the instances (new one healthy, then the
old one stops), so a restart or a new secret never takes the app down. People see "vN".

Every change is a read-modify-write guarded by the spec's mod revision, retried a few times
when something else changed it meanwhile.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable

from placer.model import instance_name, process_of
from vcapp.appconfig import ENV_NAME, VOLUME_RANGE_MB, env_problem
from vcapp.errors import BadRequest, Conflict, NotFound
from vcapp.state import builds, events, keys, releases
from vcapp.state.instances import app_reports, assignments
from vcapp.state.store import Store, absent, delete_op, none_under, put_op, unchanged

# Patterns are matched whole (fullmatch): `$` would also match before a final newline.
# A volume name becomes part of SeaweedFS collection and path names (storage/volumes.py).
VOLUME_NAME = re.compile(r"[a-z][a-z0-9-]{0,40}")

APP_NAME = re.compile(r"[a-z][a-z0-9-]{0,29}")  # a DNS label: the app's subdomain
MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*([mg]?)i?b?")
VOLUME_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(m|mb|mib|g|gb|gib|t|tb|tib)?")
HEALTH_SECONDS = (0.0, 3600.0)  # start grace and check timeout: an hour is already a typo
MAX_COUNT = 100
MAX_CPUS = 64.0
MIN_MEMORY_MB = 16       # below this podman/runc itself does not fit in the cgroup
MAX_MEMORY_MB = 1 << 20  # 1 TB: anything above is a typo
DEFAULT_MEMORY_MB = 256
DEFAULT_CPUS = 0.5
DEFAULT_PIDS = 256       # a web server with workers; stops a fork bomb early
UPDATE_ATTEMPTS = 5      # races only with another admin change or a deploy of the same app
HEALTH_TYPES = ("http", "tcp", "none")
# A process type names instances ("worker-0") and containers: lower-case, short. `web` is the
# spec's own count/command/port; `release` is a Procfile line run once per release, not a type.
PROCESS_NAME = re.compile(r"[a-z][a-z0-9_-]{0,19}")
# An instance of a process type (placer.model.instance_name): "0" for web, "worker-1".
INSTANCE = re.compile(r"[0-9]{1,4}|[a-z][a-z0-9_-]{0,19}-[0-9]{1,4}")
RESERVED_PROCESSES = ("web", "release")
MAX_PROCESS_TYPES = 10


# ---- validation (shared by the CLI and the API) ---------------------------------------------

def app_name(value: Any) -> str:
    name = "" if value is None else str(value)
    if not APP_NAME.fullmatch(name):
        raise BadRequest(f"app name {name!r} is not valid: 1-30 characters, lower-case letters, digits and '-', "
                         "starting with a letter (it becomes the app's subdomain)")
    return name


def parse_memory(value: Any) -> int:
    """Megabytes from 256, "256M", "256MB", "1G", "1.5GiB"."""
    if isinstance(value, bool) or value is None:
        raise BadRequest("memory: give a size like 256M or 1G")
    match = MEMORY.fullmatch(str(value).strip().lower())
    if not match:
        raise BadRequest(f"memory: {value!r} is not a size; use megabytes or gigabytes like 256M or 1G")
    mb = float(match.group(1)) * (1024 if match.group(2) == "g" else 1)
    if not MIN_MEMORY_MB <= mb <= MAX_MEMORY_MB:  # also refuses a number too long to be finite
        raise BadRequest(f"memory: must be between {MIN_MEMORY_MB}M and {MAX_MEMORY_MB // 1024}G")
    return int(mb)


def parse_volume_size(value: Any) -> int:
    """Megabytes from 512, "512M", "1G", "1.5GiB", "1T" (a volume's quota)."""
    match = VOLUME_SIZE.fullmatch(str(value).strip().lower()) if not isinstance(value, bool) and value is not None \
        else None
    if not match:
        raise BadRequest(f"size: {value!r} is not a size; use megabytes or gigabytes like 512M or 1G")
    mb = float(match.group(1)) * {"m": 1, "g": 1024, "t": 1024 * 1024}[(match.group(2) or "m")[0]]
    low, high = VOLUME_RANGE_MB
    if not mb <= high:  # also a number too long to be finite, which is not said back
        raise BadRequest(f"size: at most {high // 1024}G")
    if mb < low:
        raise BadRequest(f"size: must be between {low}M and {high // 1024}G")
    return int(mb)


def parse_cpus(value: Any) -> float:
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        raise BadRequest(f"cpus: {value!r} is not a number; give a share of CPUs like 0.5 or 2") from None
    if isinstance(value, bool) or not 0.01 <= cpus <= MAX_CPUS:
        raise BadRequest(f"cpus: must be between 0.01 and {MAX_CPUS:g}")
    return round(cpus, 3)


def parse_count(value: Any) -> int:
    try:
        count = int(value)
    except (TypeError, ValueError, OverflowError):
        raise BadRequest(f"count: {value!r} is not a whole number of instances") from None
    if isinstance(value, bool) or not 0 <= count <= MAX_COUNT:
        raise BadRequest(f"count: must be between 0 (stopped) and {MAX_COUNT}")
    return count


def parse_port(value: Any) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError, OverflowError):
        raise BadRequest(f"port: {value!r} is not a port number") from None
    if isinstance(value, bool) or not 1 <= port <= 65535:
        raise BadRequest("port: must be between 1 and 65535 (the port the app listens on inside its container)")
    return port


def parse_priority(value: Any) -> int:
    try:
        prio = int(value)
    except (TypeError, ValueError, OverflowError):
        raise BadRequest(f"priority: {value!r} is not a whole number") from None
    if isinstance(value, bool) or not -1000 <= prio <= 1000:
        raise BadRequest("priority: must be between -1000 and 1000 (higher is placed first when room is short)")
    return prio


def parse_command(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        raise BadRequest("command: give a non-empty list of strings, e.g. [\"sh\", \"-c\", \"exec my-server\"]")
    return list(value)


def process_name(value: Any) -> str:
    name = "" if value is None else str(value)
    if not PROCESS_NAME.fullmatch(name):
        raise BadRequest(f"process type {name!r} is not valid: 1-20 lower-case letters, digits, '_' and '-', "
                         "starting with a letter (like worker or clock)")
    return name


def parse_processes(value: Any) -> dict[str, dict]:
    """Process types besides web: {"worker": {"command": [...], "count": 1}} (count defaults to 1)."""
    if not isinstance(value, dict):
        raise BadRequest('processes: give an object of types, e.g. {"worker": {"command": ["sh", "-c", "..."]}}')
    if len(value) > MAX_PROCESS_TYPES:
        raise BadRequest(f"processes: at most {MAX_PROCESS_TYPES} process types, got {len(value)}")
    out = {}
    for name, proc in value.items():
        name = process_name(name)
        if name in RESERVED_PROCESSES:
            raise BadRequest(f"processes: {name!r} is not a process type here: web is the app's own command, "
                             "release runs once per release")
        if not isinstance(proc, dict):
            raise BadRequest(f"processes.{name}: give {{\"command\": [...], \"count\": 1}}")
        out[name] = {"command": parse_command(proc.get("command")), "count": parse_count(proc.get("count", 1))}
    return out


def parse_scale_counts(value: Any) -> dict[str, int]:
    """{"web": 2, "worker": 1} from `vcapp scale APP web=2 worker=1`: each a valid count."""
    if not isinstance(value, dict) or not value:
        raise BadRequest('processes: give counts per process type, e.g. {"worker": 2}')
    out = {}
    for name, count in value.items():
        name = process_name(name)
        try:
            out[name] = parse_count(count)
        except BadRequest as e:
            raise BadRequest(f"{name}: {e.message}") from None
    return out


def parse_commands(value: Any) -> dict[str, list[str]]:
    """A release's process table: {"worker": ["sh", "-c", "..."]} (web and release excluded)."""
    if not isinstance(value, dict):
        raise BadRequest("processes: give an object of process types to commands")
    return {k: p["command"] for k, p in parse_processes({k: {"command": c} for k, c in value.items()}).items()}


def parse_health(value: Any) -> dict:
    if not isinstance(value, dict) or value.get("type") not in HEALTH_TYPES:
        raise BadRequest('health: give {"type": "http", "path": "/healthz"}, {"type": "tcp"} or {"type": "none"}')
    out = {"type": value["type"]}
    if value["type"] == "http":
        path = str(value.get("path", "/"))
        if not path.startswith("/"):
            raise BadRequest(f"health.path: {path!r} must start with '/'")
        out["path"] = path
    for field in ("start_grace_s", "timeout_s"):
        if field in value:
            try:
                seconds = float(value[field])
            except (TypeError, ValueError):
                raise BadRequest(f"health.{field}: {value[field]!r} is not a number of seconds") from None
            if isinstance(value[field], bool) or not HEALTH_SECONDS[0] <= seconds <= HEALTH_SECONDS[1]:
                raise BadRequest(f"health.{field}: must be a number of seconds from {HEALTH_SECONDS[0]:g} "
                                 f"to {HEALTH_SECONDS[1]:g}")
            out[field] = seconds
    return out


def parse_labels(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise BadRequest(f"{what}: give an object of names to values, e.g. {{\"site\": \"home\"}}")
    return {k: str(v) for k, v in value.items()}


def parse_env(value: Any) -> dict[str, str]:
    """An app's plain env: POSIX names, bounded values (vcapp/appconfig.py's rules for [env])."""
    if not isinstance(value, dict):
        raise BadRequest('env: give an object of names to values, e.g. {"MODE": "prod"}')
    for name in value:
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
            raise BadRequest(f"env: {name!r} is not a variable name: letters, digits and '_', not starting "
                             "with a digit (at most 128)")
    env = {k: str(v) for k, v in value.items()}
    problem = env_problem(env)
    if problem:
        raise BadRequest(f"env: {problem}")
    return env


def parse_volumes(value: Any) -> list[dict]:
    """[{"source": volume name, "destination": "/path", "size": "1G" (optional)}, ...] as
    [{"source", "destination", "size_mb"?}] (the shape vcapp.toml's [[mounts]] produce: the size
    the first instance creates the volume with); a name or a path may appear once."""
    if not isinstance(value, list):
        raise BadRequest("volumes must be a list of {source, destination, size?}")
    found: list[dict] = []
    for v in value:
        source, dest = (v.get("source"), v.get("destination")) if isinstance(v, dict) else (None, None)
        if not isinstance(source, str) or not VOLUME_NAME.fullmatch(source):
            raise BadRequest(f"volume name {source!r} must be lowercase letters, digits and '-', e.g. data")
        if not isinstance(dest, str) or not dest.startswith("/") or dest == "/":
            raise BadRequest(f"volume {source}: mount path {dest!r} must be an absolute path like /data")
        if any(f["source"] == source or f["destination"] == dest for f in found):
            raise BadRequest(f"volume {source} or path {dest} is given twice")
        size = v.get("size", v.get("size_mb"))
        found.append({"source": source, "destination": dest,
                      **({} if size is None else {"size_mb": parse_volume_size(size)})})
    return found


def check_single_writer(count: int, volumes: list | None) -> int:
    """A volume has one writer at a time (storage/guard.py): an app with volumes runs one instance."""
    if volumes and count > 1:
        raise BadRequest(f"an app with volumes runs 1 instance (a volume has one writer at a time); "
                         f"got {count}. Split the data per instance into separate apps, or use a bucket")
    return count


def total_count(spec: dict, counts: dict[str, int] | None = None) -> int:
    """Instances of every process type; `counts` overrides some (web included)."""
    want = {"web": spec.get("count", 1), **{k: p.get("count", 0) for k, p in (spec.get("processes") or {}).items()}}
    want.update(counts or {})
    return sum(want.values())


def runtime_release(spec: dict) -> str:
    """The release the runtime runs: deploy release and revision (see the module docstring)."""
    return f"{spec.get('release') or 0}.{spec.get('revision', 0)}"


def release_label(runtime: Any) -> str:
    """"v2" for the runtime identity "2.1" (or the release number 2); "-" for none."""
    number = str(runtime or "").split(".", 1)[0]
    return f"v{number}" if number.isdigit() and number != "0" else "-"


# ---- reading --------------------------------------------------------------------------------

def get_app(store: Store, name: str) -> dict:
    spec = store.value(keys.app(app_name(name)))
    if spec is None:
        raise NotFound(f"no app named {name!r}; `vcapp apps` lists them, `vcapp apps create {name}` makes it")
    return spec


def list_apps(store: Store) -> list[dict]:
    return [dict(e.value, name=keys.name_of(e.key, keys.APPS)) for e in store.list(keys.APPS)]


# ---- changing -------------------------------------------------------------------------------

def new_spec(name: str, body: dict) -> dict:
    """A validated spec from a create request: image/port/command optional (git push sets them)."""
    spec: dict[str, Any] = {
        "name": app_name(name), "count": parse_count(body.get("count", 1)),
        "cpus": parse_cpus(body.get("cpus", DEFAULT_CPUS)),
        "memory_mb": parse_memory(body.get("memory", body.get("memory_mb", DEFAULT_MEMORY_MB))),
        "disk_mb": 0, "pids": DEFAULT_PIDS, "priority": parse_priority(body.get("priority", 0)),
        "constraints": parse_labels(body.get("constraints", {}), "constraints"),
        "env": parse_env(body.get("env", {})), "secrets": [], "revision": 0,
        "release": None, "image": "", "created_at": time.time(),
    }
    if body.get("port") is not None:
        spec["port"] = parse_port(body["port"])
    if body.get("command") is not None:
        spec["command"] = parse_command(body["command"])
    if body.get("image"):
        spec["image"], spec["release"] = str(body["image"]), 1
    if body.get("processes"):
        spec["processes"] = parse_processes(body["processes"])
    if body.get("volumes"):
        spec["volumes"] = parse_volumes(body["volumes"])
        check_single_writer(total_count(spec), spec["volumes"])
    default_health = {"type": "tcp"} if "port" in spec else {"type": "none"}
    spec["health"] = parse_health(body["health"]) if body.get("health") is not None else default_health
    return spec


def create_app(store: Store, name: str, body: dict, repo_root: Path | None = None) -> dict:
    """Write a new app's spec (refused if the name is taken) and make its git repository."""
    spec = new_spec(name, body)
    if not store.txn([absent(keys.app(spec["name"]))], [put_op(keys.app(spec["name"]), spec)]):
        raise Conflict(f"an app named {spec['name']!r} already exists; pick another name or "
                       f"`vcapp apps destroy {spec['name']}` first")
    if repo_root is not None:
        entry = store.get(keys.app(spec["name"]))
        _create_repo(repo_root, spec["name"], entry.create_revision if entry else 0)
    how = f"image {spec['image']}" if spec["image"] else "waiting for its first git push"
    events.record(store, "app.created", f"app {spec['name']} created ({how})", app=spec["name"])
    return spec


def generations(store: Store) -> dict[str, int]:
    """Each app's generation: the etcd revision that created its record (a destroyed app made
    again is another generation)."""
    return {keys.name_of(e.key, keys.APPS): e.create_revision for e in store.list(keys.APPS)}


def _create_repo(root: Path, name: str, generation: int) -> None:
    """The new app's empty repository here: one left by a destroyed app of the same name is
    removed first (its history is not the new app's)."""
    from vcapp.state import reposync

    reposync.fresh_repo(root, name, generation)


Roll = Callable[[dict, dict], tuple[dict, list[dict], list[dict]]]


def update_app(store: Store, name: str, change: Callable[[dict], dict], extra_ops: list[dict] | None = None,
               roll: Roll | None = None) -> dict:
    """Apply `change(spec) -> new spec` atomically; `extra_ops` go in the same transaction, and
    so do the guards and ops `roll(old, new) -> (new, guards, ops)` adds (`rolled`)."""
    key = keys.app(app_name(name))
    for _ in range(UPDATE_ATTEMPTS):
        entry = store.get(key)
        if entry is None:
            get_app(store, name)  # raises the NotFound a person can act on
        new = dict(change(dict(entry.value)), updated_at=time.time())
        guards, ops = [unchanged(key, entry.mod_revision)], list(extra_ops or [])
        if roll is not None:
            new, more_guards, more_ops = roll(entry.value, new)
            guards, ops = guards + more_guards, ops + more_ops
        if store.txn(guards, [put_op(key, new), *ops]):
            return new
    raise Conflict(f"app {name} kept changing while being updated; try again")


def rolled(store: Store, name: str, old: dict, new: dict, description: str, who: str,
           **config: Any) -> tuple[dict, list[dict], list[dict]]:
    """`new`, made to roll the instances, with the guards and ops that go with it: a release of
    its own (`config`: what changes in the release's config) when the app runs a release
    record, else a revision bump (an app made from an image has none)."""
    parent = releases.current(store, name, old)
    if parent is None:
        return dict(new, revision=new.get("revision", 0) + 1), [], []
    number, guards, ops = releases.next_ops(store, name, releases.derived(parent, "config", description, who,
                                                                         **config))
    return dict(new, release=number, revision=0), guards, ops


def scale(store: Store, name: str, count: Any = None, memory: Any = None, cpus: Any = None,
          processes: Any = None, who: str = "") -> dict:
    """Change instance counts (web's `count`, or per process type: {"web": 2, "worker": 1})
    and/or per-instance limits; new limits roll the instances. A type the app does not have
    is refused, naming the ones it has."""
    if count is None and memory is None and cpus is None and processes is None:
        raise BadRequest("scale: give at least one of count, memory, cpus or counts per process type")
    counts = {} if processes is None else parse_scale_counts(processes)
    if count is not None:
        if "web" in counts:
            raise BadRequest("scale: give web's count once (count or web=N), not both")
        counts["web"] = parse_count(count)
    new_mem = None if memory is None else parse_memory(memory)
    new_cpus = None if cpus is None else parse_cpus(cpus)

    def change(spec: dict) -> dict:
        if spec.get("destroying"):
            raise Conflict(f"app {name} is being destroyed; finish with `vcapp apps destroy {name} --confirm {name}`")
        have = spec.get("processes") or {}
        unknown = sorted(set(counts) - {"web"} - set(have))
        if unknown:
            raise BadRequest(f"app {name} has no process type {unknown[0]!r}; its types are "
                             f"{', '.join(['web', *sorted(have)])} (from its Procfile or vcapp.toml [processes])")
        spec.update({k: v for k, v in (("memory_mb", new_mem), ("cpus", new_cpus)) if v is not None})
        if counts:
            check_single_writer(total_count(spec, counts), spec.get("volumes"))
        if "web" in counts:
            spec["count"] = counts["web"]
        if set(counts) - {"web"}:
            spec["processes"] = {k: dict(p, count=counts.get(k, p.get("count", 0))) for k, p in have.items()}
        return spec

    def roll(old: dict, new: dict) -> tuple[dict, list[dict], list[dict]]:
        limits = {k: new.get(k) for k in ("memory_mb", "cpus") if new.get(k) != old.get(k)}
        if not limits:
            return new, [], []
        said = ", ".join(f"{new['memory_mb']} MB" if k == "memory_mb" else f"{new['cpus']:g} CPU" for k in limits)
        return rolled(store, name, old, new, f"Scale limits to {said}", who, **limits)

    spec = update_app(store, name, change, roll=roll)
    extra = "".join(f", {k} x {p.get('count', 0)}" for k, p in sorted((spec.get("processes") or {}).items()))
    events.record(store, "app.scaled", f"app {name} scaled to {spec['count']} x {spec['cpus']:g} CPU, "
                                       f"{spec['memory_mb']} MB{extra}", app=name)
    return spec


def restart(store: Store, name: str) -> dict:
    """Roll every instance: each new container is healthy before the old one stops."""
    spec = update_app(store, name, lambda s: dict(s, revision=s.get("revision", 0) + 1))
    events.record(store, "app.restarted", f"app {name} {release_label(spec.get('release'))} restart requested "
                                          f"(restart {spec['revision']})", app=name)
    return spec


def set_release(store: Store, app: str, release: int | str, image: str, config: dict | None = None,
                built_on: str | None = None) -> dict:
    """A new deploy: set release, image and the build's config (port, command, env, health) at once.
    `built_on`: the machine that built the image; its registry keeps the app's build-step
    layers, which the next build on another machine starts from (vcapp/deploy/pipeline.py).

    Called by the git push pipeline once the image is in the registry; records a `deploy` event.
    """
    config = config or {}
    updates: dict[str, Any] = {"release": release, "image": str(image), "revision": 0}
    if config.get("port") is not None:
        updates["port"] = parse_port(config["port"])
    if config.get("command") is not None:
        updates["command"] = parse_command(config["command"])
    if config.get("env") is not None:
        updates["env"] = parse_env(config["env"])
    if config.get("health") is not None:
        updates["health"] = parse_health(config["health"])
    elif "port" in updates:
        updates["health"] = {"type": "tcp"}
    commands = None if config.get("processes") is None else parse_commands(config["processes"])

    def change(spec: dict) -> dict:
        spec = dict(spec, **updates)
        spec.pop("built_on", None)
        if built_on:
            spec["built_on"] = built_on
        if commands is not None:  # the release's process table; a scaled type keeps its count
            have = spec.get("processes") or {}
            spec["processes"] = {k: {"command": c, "count": (have.get(k) or {}).get("count", 1)}
                                 for k, c in commands.items()}
            if not spec["processes"]:
                del spec["processes"]
        return spec

    spec = update_app(store, app, change)
    events.record(store, "deploy", f"app {app} v{release} ({image}) deployed", app=app, release=release)
    return spec


def run_release(store: Store, app: str, rec: dict) -> dict:
    """Point the app at release `rec`: its operational fields, then set_release (one roll)."""
    config = rec.get("config") or {}
    ops = {k: config[k] for k in ("count", "kill_timeout", "cpus", "memory_mb", "policy") if k in config}
    if "mounts" in config:  # vcapp.toml's [[mounts]]: the volumes every instance mounts
        ops["volumes"] = config["mounts"] or []
    if ops:
        # Without a revision bump: these roll out with the new release set just below.
        update_app(store, app, lambda spec: dict(spec, **ops))
    return set_release(store, app, rec["number"], releases.run_image(rec), config, rec.get("built_on"))


def rollback(store: Store, app: str, number: int | None, who: str) -> dict:
    """Run the code of release `number` again (default: the newest released one before the
    current with other code), as a new release that says so."""
    spec = get_app(store, app)
    current = spec.get("release")
    if number is None:
        if not isinstance(current, int):
            raise BadRequest(f"app {app} has no deployed release to roll back from; give a release number")
        target = releases.previous_good(store, app, current)
        if target is None:
            raise BadRequest(f"app {app} has no released version before v{current}; "
                             f"`vcapp releases {app}` lists them")
    else:
        if number < 1:
            raise BadRequest("release numbers start at 1; `vcapp releases APP` lists them")
        target = releases.get_release(store, app, number)
    rec = releases.record_next(store, app, releases.derived(target, "rollback", f"Rollback to v{target['number']}",
                                                            who))
    new_spec = run_release(store, app, rec)
    events.record(store, "rollback", f"app {app} rolled back from v{current} to v{target['number']}'s code "
                                     f"as v{rec['number']} by {who}",
                  app=app, release=rec["number"], target=target["number"], previous=current, who=who)
    return {"app": app, "release": rec["number"], "target": target["number"], "previous": current,
            "image": target["image"], "runtime_release": runtime_release(new_spec), "time": time.time()}


def destroy(store: Store, name: str, repo_root: Path | None = None) -> dict:
    """Remove the app and everything of it kept in etcd, in one transaction: its spec (custom
    domains and access policy are in it), secrets, end-user access tokens, release records,
    build records and logs, repository record, metrics history and pending record. Events stay: they are the
    cluster's history. The node loops converge the rest from that state: the placer stops
    its instances and the runtimes remove them, every machine's repository loop removes its
    copy of the repository (vcapp/state/reposync.py: `stale_repos`); this machine's copy goes now
    (`repo_root`). A token that escapes the transaction (created while it ran) still opens
    nothing: tokens are bound to the app's generation (vcapp/state/apptokens.py).

    Refused while the app has volume or bucket records: their data goes first, with the
    admin's confirmation (vcapp/deploy/destroy.py, which calls this last). Answers what was removed."""
    name = app_name(name)
    for _ in range(UPDATE_ATTEMPTS):
        entry = store.get(keys.app(name))
        if entry is None:
            get_app(store, name)  # raises the NotFound a person can act on
        _refuse_with_data(store, name, keys.volume(name, ""), keys.bucket(name))
        tokens = [e.key for e in store.list(keys.APP_TOKENS)
                  if isinstance(e.value, dict) and e.value.get("app") == name]
        release_count = store.count(keys.release(name))
        ops = [delete_op(keys.app(name)), delete_op(keys.secrets(name)), delete_op(keys.pending(name)),
               delete_op(keys.repo(name)), delete_op(keys.release(name), prefix=True),
               delete_op(keys.metrics(f"app/{name}"), prefix=True), *builds.delete_ops(name),
               *(delete_op(k) for k in tokens)]
        guards = [unchanged(keys.app(name), entry.mod_revision), none_under(keys.volume(name, "")),
                  absent(keys.bucket(name))]
        if store.txn(guards, ops):
            break
    else:
        raise Conflict(f"app {name} kept changing while being destroyed; try again")
    if repo_root is not None:
        from vcapp.state import reposync

        reposync.remove_local(repo_root, name)
    events.record(store, "app.destroyed", f"app {name} destroyed ({len(tokens)} access token(s), "
                                          f"{release_count} release record(s) removed)", app=name)
    return {"destroyed": name, "tokens": len(tokens), "releases": release_count}


def _refuse_with_data(store: Store, name: str, volumes_prefix: str, bucket: str) -> None:
    volumes = [keys.name_of(e.key, volumes_prefix) for e in store.list(volumes_prefix)]
    bucket = store.value(bucket)
    if not volumes and not bucket:
        return
    held = ([f"volume(s) {', '.join(volumes)}"] if volumes else []) + \
        ([f"bucket {bucket.get('bucket', name)}"] if bucket else [])
    raise Conflict(f"app {name} keeps data in {' and '.join(held)}; destroying it deletes that data for good, "
                   f"so it needs confirmation: `vcapp apps destroy {name} --confirm {name}` "
                   f"(to stop the app only: `vcapp scale {name} --count 0`)")


# ---- instances (for `vcapp ps`) ---------------------------------------------------------------

def instances(store: Store, name: str) -> list[dict]:
    """Each instance of the app: where it is assigned, what its runtime reports, or why it is pending."""
    spec = get_app(store, name)
    assigned = assignments(store, name)
    reports = {r["instance"]: r for r in app_reports(store, name)
               if assigned.get(r["instance"], {}).get("node") == r["node"]}
    pending = (store.value(keys.pending(name)) or {}).get("instances", {})
    rows = []
    wanted = {instance_name(kind, i) for kind, n in process_counts(spec).items() for i in range(n)}
    for inst in sorted(set(assigned) | set(pending) | wanted, key=_instance_order):
        row = _instance_row(spec, inst, assigned.get(inst), reports.get(inst), pending.get(inst))
        rows.append(dict(row, process=process_of(inst)[0]))
    return rows


def process_counts(spec: dict) -> dict[str, int]:
    """Instances wanted per process type, web first."""
    procs = spec.get("processes") or {}
    return {"web": spec.get("count", 0), **{k: procs[k].get("count", 0) for k in sorted(procs)}}


def _instance_order(inst: str) -> tuple:
    kind, slot = process_of(inst)
    return (kind != "web", kind, slot if slot is not None else -1, inst)


def _instance_row(spec: dict, inst: str, assign: dict | None, rep: dict | None, pending: str | None) -> dict:
    row = {"instance": inst, "node": None, "release": None, "state": "pending", "health": "-", "restarts": 0,
           "host_port": None, "reason": pending or ""}
    if not spec.get("image"):
        row["reason"] = row["reason"] or f"not deployed yet: git push to the app's repository ({spec['name']}.git)"
    if pending:  # homeless: its assignment, if any, names a dead machine it will go back to
        return row
    if assign:
        row.update(node=assign["node"], release=assign.get("release"), state="assigned",
                   reason=assign.get("reason", ""))
    if rep:
        row.update({k: rep.get(k) for k in ("release", "state", "health", "restarts", "host_port", "container",
                                            "cpu_percent", "memory_mb", "memory_limit_mb", "started_at")})
        row["reason"] = rep.get("message") or row["reason"]
    row["version"] = release_label(row["release"])  # "release" is the runtime's "2.1", people read "v2"
    return row
