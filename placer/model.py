"""The placer's input snapshot and output plan, as plain dataclasses, and their JSON shapes.

These shapes are the contract with etcd (vcapp/state/keys.py, docs/ARCHITECTURE.md "State in etcd"). The glue reads
the keys, builds a `ClusterState` with `ClusterState.from_json(...)`, calls `plan()`, and
writes `Placement.to_json()` to `/vc/assign/<app>/<instance>` (deleting the keys of
`Plan.stops`). Nothing here does I/O.

/vc/nodes/<id>  (node record, written by the node at join and refreshed by its agent)
    {"name": "office-1", "site": "office", "labels": {"gpu": "true"},
     "cpus": 4, "memory_mb": 8192, "disk_mb": 100000,            # totals
     "free_cpus": 3.5, "free_memory_mb": 6000, "free_disk_mb": 80000,   # measured now, optional
     "images": ["localhost/blog:3", ...]}                         # images already on the machine
/vc/alive/<id>  present = alive. The glue passes the time the key appeared (its lease's
    creation) as `up_since` (unix seconds), so the placer can tell a machine that just came back.
/vc/apps/<app>  (spec, written by the API)
    {"count": 2, "cpus": 0.5, "memory_mb": 256, "disk_mb": 100, "pids": 256,
     "constraints": {"site": "home", "gpu": "true"}, "priority": 10,
     "release": 3, "image": "localhost/blog:3", "port": 8080,
     "health": {"type": "http", "path": "/healthz"} | {"type": "tcp"},
     "command": ["..."] (optional), "env": {"K": "V"} (not secret), "secrets": ["DATABASE_URL"],
     "processes": {"worker": {"command": ["sh", "-c", "..."], "count": 1}} (optional)}
    `count`, `port`, `health` and `command` are the `web` process's; every other process type
    (a Procfile's worker, clock, ...) runs `count` instances of the same image with its own
    command, no published port and no health check beyond "the process runs".
/vc/assign/<app>/<instance>  (this package's decision; `instance` is a slot number "0", "1", ...
    for web, "<type>-<slot>" ("worker-0") for another process type)
    every field of the app spec that the runtime needs, plus
    {"app": "blog", "instance": "0", "node": "<node id>", "reason": "placed: ..."}
    and, for other process types, {"process": "worker"} with that type's command, no port and
    health {"type": "none"}.
    Secret *names* only: the node agent fetches the values itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WEB = "web"  # the process type that serves HTTP; its instances are named by slot alone

# Fields of an app spec copied verbatim into each assignment for the node runtime.
RUNTIME_FIELDS = ("release", "image", "port", "health", "command", "env", "secrets",
                  "cpus", "memory_mb", "disk_mb", "pids", "kill_timeout")


def instance_name(process: str, slot: int) -> str:
    """The instance name of `process`'s slot: "0" for web (as before process types), "worker-0"."""
    return str(slot) if process == WEB else f"{process}-{slot}"


def process_of(instance: str) -> tuple[str, int | None]:
    """(process type, slot) of an instance name; slot None for a name that is neither form."""
    if instance.isdigit():
        return WEB, int(instance)
    kind, _, slot = instance.rpartition("-")
    return (kind, int(slot)) if kind and slot.isdigit() else (instance, None)


def _label(value: Any) -> str:
    """Label values compare as strings; JSON true/false read as "true"/"false"."""
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Node:
    """One machine as the placer sees it. Free figures are optional measurements."""

    id: str
    name: str
    site: str
    cpus: float
    memory_mb: int
    disk_mb: int
    labels: dict[str, str] = field(default_factory=dict)
    alive: bool = True
    up_since: float | None = None
    images: frozenset[str] = frozenset()
    free_cpus: float | None = None
    free_memory_mb: int | None = None
    free_disk_mb: int | None = None
    drained: bool = False  # `vcapp node drain`: up, but takes no instances
    unreachable: bool = False  # its lease lives, but the other machines cannot reach it

    @classmethod
    def from_json(cls, node_id: str, rec: dict[str, Any], alive: bool, up_since: float | None = None,
                  drained: bool = False, unreachable: bool = False) -> "Node":
        return cls(
            id=node_id, name=rec.get("name", node_id), site=rec.get("site", ""),
            cpus=float(rec["cpus"]), memory_mb=int(rec["memory_mb"]), disk_mb=int(rec["disk_mb"]),
            labels={k: _label(v) for k, v in rec.get("labels", {}).items()}, alive=alive, up_since=up_since,
            images=frozenset(rec.get("images", ())), free_cpus=rec.get("free_cpus"),
            free_memory_mb=rec.get("free_memory_mb"), free_disk_mb=rec.get("free_disk_mb"), drained=drained,
            unreachable=unreachable,
        )

    def label(self, key: str) -> str | None:
        """A label's value; `site` is a label every machine has."""
        return self.site if key == "site" else self.labels.get(key)


@dataclass(frozen=True)
class App:
    """An app's desired shape. `spec` keeps the whole JSON so runtime fields pass through."""

    name: str
    count: int
    cpus: float
    memory_mb: int
    disk_mb: int = 0
    priority: int = 0
    constraints: dict[str, str] = field(default_factory=dict)
    release: int | str | None = None
    image: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    processes: dict[str, int] = field(default_factory=dict)  # type other than web -> count

    @property
    def owns_volumes(self) -> bool:
        """Its instances write volumes: one writer, so they move only when a lease expires."""
        return bool(self.spec.get("volumes"))

    @property
    def counts(self) -> dict[str, int]:
        """Instances wanted per process type, web first."""
        return {WEB: self.count, **{k: n for k, n in sorted(self.processes.items()) if k != WEB}}

    @classmethod
    def from_json(cls, name: str, spec: dict[str, Any]) -> "App":
        procs = spec.get("processes") or {}
        return cls(
            processes={str(k): int((v or {}).get("count", 0)) for k, v in procs.items() if isinstance(v, dict)},
            name=name, count=int(spec.get("count", 1)), cpus=float(spec.get("cpus", 0)),
            memory_mb=int(spec.get("memory_mb", 0)), disk_mb=int(spec.get("disk_mb", 0)),
            priority=int(spec.get("priority", 0)),
            constraints={k: _label(v) for k, v in spec.get("constraints", {}).items()},
            release=spec.get("release"), image=spec.get("image", ""), spec=dict(spec),
        )


@dataclass(frozen=True)
class Assignment:
    """An instance the cluster currently has assigned (read from /vc/assign/...)."""

    app: str
    instance: str
    node: str
    release: int | str | None = None
    cpus: float = 0.0
    memory_mb: int = 0
    disk_mb: int = 0

    @classmethod
    def from_json(cls, rec: dict[str, Any]) -> "Assignment":
        return cls(
            app=rec["app"], instance=str(rec["instance"]), node=rec["node"], release=rec.get("release"),
            cpus=float(rec.get("cpus", 0)), memory_mb=int(rec.get("memory_mb", 0)),
            disk_mb=int(rec.get("disk_mb", 0)),
        )


@dataclass(frozen=True)
class ClusterState:
    """Everything `plan` looks at. `now` is unix seconds, given so plans are reproducible."""

    nodes: list[Node]
    apps: list[App]
    assignments: list[Assignment] = field(default_factory=list)
    now: float = 0.0

    @classmethod
    def from_json(cls, nodes: dict[str, dict], alive: dict[str, float | None], apps: dict[str, dict],
                  assignments: list[dict], now: float, drained: set[str] | frozenset[str] = frozenset(),
                  unreachable: set[str] | frozenset[str] = frozenset()) -> "ClusterState":
        """nodes: id -> record; alive: id -> up_since for ids whose /vc/alive key exists;
        drained: ids of drained machines; unreachable: live ids the others cannot reach."""
        return cls(
            nodes=[Node.from_json(i, r, i in alive, alive.get(i), i in drained, i in unreachable)
                   for i, r in sorted(nodes.items())],
            apps=[App.from_json(n, s) for n, s in sorted(apps.items())],
            assignments=[Assignment.from_json(a) for a in assignments], now=now,
        )


@dataclass(frozen=True)
class Placement:
    """Run `app`/`instance` on `node` (new, moved off `previous_node`, or a new release in place)."""

    app: str
    instance: str
    node: str
    release: int | str | None
    reason: str
    previous_node: str | None = None

    def to_json(self, app: App) -> dict[str, Any]:
        """The /vc/assign/<app>/<instance> value."""
        rec = {k: app.spec[k] for k in RUNTIME_FIELDS if k in app.spec}
        rec.update(app=self.app, instance=self.instance, node=self.node, reason=self.reason)
        kind, _ = process_of(self.instance)
        if kind != WEB:
            proc = (app.spec.get("processes") or {}).get(kind) or {}
            rec.pop("port", None)
            rec.update(process=kind, health={"type": "none"})
            if proc.get("command"):
                rec["command"] = list(proc["command"])
            else:
                rec.pop("command", None)
        return rec


@dataclass(frozen=True)
class Stop:
    """Remove `app`/`instance` from the cluster (delete its assignment)."""

    app: str
    instance: str
    node: str
    reason: str


@dataclass(frozen=True)
class Pending:
    """An instance that has no machine; `reason` says what a human could change."""

    app: str
    instance: str
    reason: str


@dataclass
class Plan:
    placements: list[Placement] = field(default_factory=list)
    stops: list[Stop] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)

    def where(self, app: str) -> dict[str, str]:
        """instance -> node for the placements of one app (handy for callers and tests)."""
        return {p.instance: p.node for p in self.placements if p.app == app}
