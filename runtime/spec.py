"""What one instance should be: `InstanceSpec`, built from the placer's assignment JSON.

/vc/assign/<app>/<instance> (see placer/model.py), fields the runtime reads:
    {"app": "blog", "instance": "0", "node": "<node id>", "release": 3,
     "image": "localhost/blog:3", "port": 8080,            # port the app listens on inside
     "command": ["busybox", "httpd", "-f"],                 # optional, overrides the image's CMD
     "cpus": 0.5, "memory_mb": 256, "pids": 256,            # limits (pids optional)
     "env": {"MODE": "prod"},                               # plain, not secret
     "secrets": ["DATABASE_URL"],                           # names; values come from the caller
     "volumes": [{"source": "data", "destination": "/data", "size_mb": 1024}],  # app volumes
     "health": {"type": "http", "path": "/healthz",         # or {"type": "tcp"} or {"type": "none"}
                "interval_s": 2, "timeout_s": 2, "start_grace_s": 30}}
Secret values are handed to `from_assignment` by the caller (decrypted elsewhere); they are
kept out of repr() so they never reach a log line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PIDS = 512  # enough for a web server with worker processes, stops a fork bomb early
# A new instance gets this long to pass its first health check before it counts as failing:
# most web apps boot in a few seconds; 30 s leaves room for a slow interpreter start.
DEFAULT_START_GRACE_S = 30.0
# SIGTERM, then this long for requests in flight to finish before SIGKILL (vcapp.toml
# `kill_timeout`; Fly.io's default is 5 s, Kubernetes' grace 30 s, Kamal drains 30 s).
DEFAULT_KILL_TIMEOUT_S = 10
KILL_TIMEOUT_RANGE_S = (1, 300)
DEFAULT_CHECK_TIMEOUT_S = 2.0
NAME_OK = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class SpecError(ValueError):
    """An assignment the runtime cannot run; the message names the field to fix."""


@dataclass(frozen=True)
class HealthCheck:
    kind: str = "tcp"  # "http", "tcp" or "none"
    path: str = "/"
    timeout_s: float = DEFAULT_CHECK_TIMEOUT_S
    start_grace_s: float = DEFAULT_START_GRACE_S

    @classmethod
    def from_json(cls, rec: dict[str, Any] | None) -> "HealthCheck":
        rec = rec or {}
        kind = rec.get("type", "tcp")
        if kind not in ("http", "tcp", "none"):
            raise SpecError(f"health.type is {kind!r}; use http, tcp or none")
        return cls(kind=kind, path=rec.get("path", "/"),
                   timeout_s=float(rec.get("timeout_s", DEFAULT_CHECK_TIMEOUT_S)),
                   start_grace_s=float(rec.get("start_grace_s", DEFAULT_START_GRACE_S)))


@dataclass(frozen=True)
class VolumeMount:
    """An app volume (by name) and where the container sees it. The runtime does not mount
    volumes itself: the caller's `prepare` hook (runtime/supervisor.py) says which host path holds it."""

    source: str
    destination: str
    size_mb: int | None = None

    @classmethod
    def from_json(cls, rec: Any) -> "VolumeMount":
        if not isinstance(rec, dict) or not rec.get("source") or not str(rec.get("destination", "")).startswith("/"):
            raise SpecError(f"volumes entries need a source (volume name) and an absolute destination, got {rec!r}")
        return cls(str(rec["source"]), str(rec["destination"]), int(rec["size_mb"]) if rec.get("size_mb") else None)


@dataclass(frozen=True)
class InstanceSpec:
    app: str
    instance: str
    release: str
    image: str
    port: int | None = None
    cpus: float = 0.0
    memory_mb: int = 0
    pids: int = DEFAULT_PIDS
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    health: HealthCheck = HealthCheck()
    volumes: tuple[VolumeMount, ...] = ()
    kill_timeout_s: int = DEFAULT_KILL_TIMEOUT_S

    @classmethod
    def from_assignment(cls, rec: dict[str, Any], secrets: dict[str, str] | None = None) -> "InstanceSpec":
        """Build from /vc/assign JSON; `secrets` maps secret name -> value for this app."""
        secrets = secrets or {}
        missing = [n for n in rec.get("secrets", ()) if n not in secrets]
        if missing:
            raise SpecError(f"secrets {missing} of app {rec.get('app')} were not given; set them with "
                            f"`vcapp secrets set {rec.get('app')} NAME=...`")
        for key in ("app", "instance", "image"):
            if not rec.get(key):
                raise SpecError(f"assignment lacks {key!r}: {sorted(rec)}")
        spec = cls(
            app=str(rec["app"]), instance=str(rec["instance"]), release=str(rec.get("release", "0")),
            image=rec["image"], port=int(rec["port"]) if rec.get("port") else None,
            cpus=float(rec.get("cpus", 0)), memory_mb=int(rec.get("memory_mb", 0)),
            pids=int(rec.get("pids", DEFAULT_PIDS)), command=tuple(rec.get("command") or ()),
            env={str(k): str(v) for k, v in (rec.get("env") or {}).items()},
            secrets={n: secrets[n] for n in rec.get("secrets", ())},
            health=HealthCheck.from_json(rec.get("health")),
            volumes=tuple(VolumeMount.from_json(v) for v in rec.get("volumes") or ()),
            kill_timeout_s=_kill_timeout(rec.get("kill_timeout")),
        )
        for part in (spec.app, spec.instance, spec.release):
            if not NAME_OK.match(part):
                raise SpecError(f"{part!r} is not a valid name: use lower-case letters, digits, '-', '_', '.'")
        return spec

    @property
    def key(self) -> str:
        """app/instance: the identity that survives releases."""
        return f"{self.app}/{self.instance}"

    @property
    def container_name(self) -> str:
        return f"vc-{self.app}-{self.instance}-r{self.release}"

    @property
    def network(self) -> str:
        return f"vc-app-{self.app}"


def _kill_timeout(value: Any) -> int:
    if value is None:
        return DEFAULT_KILL_TIMEOUT_S
    low, high = KILL_TIMEOUT_RANGE_S
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(f"kill_timeout {value!r}: give whole seconds from {low} to {high}")
    return value
