"""`vcapp.toml`, an app's optional config at the root of its repository (like fly.toml).

Pure: `parse(text, app)` returns an `AppConfig` or raises `AppConfigError` naming the line
and field, what was found and what is allowed. Nothing here touches the cluster.

    app = "blog"                 # optional; must be the app pushed to
    port = 8080                  # where the app listens inside its container (1-65535)
    count = 2                    # instances (0-100)
    kill_timeout = 10            # s an old instance gets to finish its requests after SIGTERM (1-300)

    [resources]
    cpus = 0.5                   # 0.05-64 cores
    memory = "256M"              # 16M-64G, or a number of MB

    [health]
    path = "/healthz"            # an HTTP check; without [health] a TCP check on `port`
    type = "http"                # http | tcp | none (default: http with a path, else tcp)
    grace = 30                   # seconds a new instance may take to pass its first check

    [env]
    MODE = "prod"                # plain values; secrets go through `vcapp secrets set`

    [[mounts]]
    source = "data"              # volume name (lowercase letters, digits, '-')
    destination = "/data"        # absolute path in the container
    size = "1G"                  # optional, 16M-1T

    [access]
    policy = "token"             # public | token (end users need a token)

    [processes]                  # like a Procfile's lines; these win over the Procfile's
    worker = "python worker.py"  # a process type: same image, own command, no HTTP
    release = "python migrate.py"  # runs once per release before it serves (refused if it fails)

What a deploy does with it (`AppConfig.spec()`, `[access] policy` becomes the spec's `policy`
that vcapp/state/access.py also sets): port and health describe the image, so they
always apply (their defaults when absent); count, resources, env, mounts and access apply only
when the file sets them, so a `vcapp scale` is not undone by the next push.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

FILENAME = "vcapp.toml"
DEFAULT_PORT = 8080  # the buildpacks' $PORT
MAX_COUNT = 100
CPUS_RANGE = (0.05, 64.0)
MEMORY_RANGE_MB = (16, 64 * 1024)
VOLUME_RANGE_MB = (16, 1024 * 1024)
GRACE_RANGE_S = (1, 600)
POLICIES = ("public", "token")
HEALTH_TYPES = ("http", "tcp", "none")
TOP_KEYS = ("app", "port", "count", "kill_timeout", "resources", "health", "env", "mounts", "access", "processes")
KILL_TIMEOUT_RANGE_S = (1, 300)  # as runtime/spec.py's
PROCESS_NAME = re.compile(r"[a-z][a-z0-9_-]{0,19}")  # as vcapp/state/apps.py's: names instances ("worker-0")
MAX_PROCESSES = 10
MAX_COMMAND = 4096
# Matched whole (fullmatch): `$` would also match before a final newline.
SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([MGT])B?", re.IGNORECASE)
UNITS_MB = {"M": 1, "G": 1024, "T": 1024 * 1024}
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")  # a POSIX name, as for app secrets
VOLUME_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
# An app's env lives in its spec in etcd and is copied into every assignment: values stay
# small (files belong in the image or a volume), so a spec never nears etcd's request limit.
MAX_ENV_VALUE = 32 * 1024
MAX_ENV_TOTAL = 64 * 1024
RESERVED_ENV = ("PORT",)


class AppConfigError(ValueError):
    """vcapp.toml is not valid; the message names the line and field and what is allowed."""


@dataclass(frozen=True)
class Mount:
    source: str
    destination: str
    size_mb: int | None = None

    def to_json(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"source": self.source, "destination": self.destination}
        if self.size_mb:
            rec["size_mb"] = self.size_mb
        return rec


@dataclass(frozen=True)
class AppConfig:
    """A parsed vcapp.toml. None means "not set in the file"."""

    port: int = DEFAULT_PORT
    health: dict[str, Any] = field(default_factory=lambda: {"type": "tcp"})
    count: int | None = None
    cpus: float | None = None
    memory_mb: int | None = None
    env: dict[str, str] | None = None
    mounts: tuple[Mount, ...] | None = None
    access: str | None = None
    processes: dict[str, str] | None = None  # [processes]: type -> command line (web, release too)
    kill_timeout: int | None = None

    def spec(self) -> dict[str, Any]:
        """The app-spec fields this config sets (see the module docstring for which)."""
        rec: dict[str, Any] = {"port": self.port, "health": dict(self.health)}
        optional = {"count": self.count, "kill_timeout": self.kill_timeout, "cpus": self.cpus, "memory_mb": self.memory_mb, "env": self.env,
                    "policy": self.access,
                    "mounts": None if self.mounts is None else [m.to_json() for m in self.mounts]}
        rec.update({k: v for k, v in optional.items() if v is not None})
        if self.processes and self.processes.get("web"):
            rec["command"] = ["sh", "-c", self.processes["web"]]
        return rec


class _Where:
    """Finds the line of a field in the source text, for error messages (tomllib gives none)."""

    def __init__(self, text: str):
        self.lines = text.splitlines()

    def line(self, table: str, key: str | None = None, index: int = 0) -> int | None:
        current, seen = "", -1
        for number, raw in enumerate(self.lines, 1):
            stripped = raw.strip()
            header = re.match(r"^\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?", stripped)
            if header:
                current = header.group(1)
                if stripped.startswith("[[") and current == table:
                    seen += 1
                if key is None and current == table and seen in (index, -1):
                    return number
                continue
            if key and current == table and seen in (index, -1) and re.match(rf"^{re.escape(key)}\s*=", stripped):
                return number
        return None

    def at(self, table: str, key: str | None = None, index: int = 0) -> str:
        number = self.line(table, key, index)
        return f"line {number}: " if number else ""


class _Parser:
    def __init__(self, text: str, app: str | None):
        self.where = _Where(text)
        self.app = app
        try:
            self.data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise AppConfigError(f"{FILENAME} is not valid TOML: {e}; see https://toml.io for the syntax") from None

    def fail(self, table: str, key: str | None, message: str, index: int = 0) -> AppConfigError:
        name = ".".join(p for p in (table, key) if p)
        if table == "mounts":
            name = f"mounts[{index}]" + (f".{key}" if key else "")
        return AppConfigError(f"{FILENAME} {self.where.at(table, key, index)}{name}: {message}")

    def parse(self) -> AppConfig:
        unknown = sorted(set(self.data) - set(TOP_KEYS))
        if unknown:
            key = unknown[0]
            raise self.fail("", key, f"unknown field; allowed: {', '.join(TOP_KEYS)}")
        self._app_name()
        port = self._int("", "port", self.data.get("port", DEFAULT_PORT), 1, 65535)
        count = self._opt_int("", "count", 0, MAX_COUNT)
        kill_timeout = self._opt_int("", "kill_timeout", *KILL_TIMEOUT_RANGE_S)
        cpus, memory = self._resources()
        return AppConfig(port=port, health=self._health(), count=count, kill_timeout=kill_timeout, cpus=cpus,
                         memory_mb=memory,
                         env=self._env(), mounts=self._mounts(), access=self._access(),
                         processes=self._processes())

    # ---- fields ----------------------------------------------------------------------------

    def _app_name(self) -> None:
        name = self.data.get("app")
        if name is None:
            return
        if not isinstance(name, str):
            raise self.fail("", "app", f"must be a string, not {_kind(name)}")
        if self.app and name != self.app:
            raise self.fail("", "app", f"says {name!r} but this is the repository of {self.app!r}: "
                                       f"fix `app` or push to the right remote")

    def _table(self, name: str) -> dict:
        value = self.data.get(name, {})
        if not isinstance(value, dict):
            raise self.fail("", name, f"must be a table ([{name}]), not {_kind(value)}")
        return value

    def _only(self, table: str, value: dict, allowed: tuple[str, ...], index: int = 0) -> None:
        extra = sorted(set(value) - set(allowed))
        if extra:
            raise self.fail(table, extra[0], f"unknown field; allowed in [{table}]: {', '.join(allowed)}", index)

    def _int(self, table: str, key: str, value: Any, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(table, key, f"must be a whole number from {low} to {high}, not {_show(value)}")
        if not low <= value <= high:
            raise self.fail(table, key, f"{value} is out of range: use {low} to {high}")
        return value

    def _opt_int(self, table: str, key: str, low: int, high: int) -> int | None:
        value = self.data.get(key)
        return None if value is None else self._int(table, key, value, low, high)

    def _resources(self) -> tuple[float | None, int | None]:
        res = self._table("resources")
        self._only("resources", res, ("cpus", "memory"))
        cpus = res.get("cpus")
        if cpus is not None:
            if isinstance(cpus, bool) or not isinstance(cpus, (int, float)):
                raise self.fail("resources", "cpus", f"must be a number of cores like 0.5, not {_show(cpus)}")
            if not CPUS_RANGE[0] <= cpus <= CPUS_RANGE[1]:
                raise self.fail("resources", "cpus", f"{cpus} is out of range: use {CPUS_RANGE[0]} to {CPUS_RANGE[1]:g}")
            cpus = float(cpus)
        memory = res.get("memory")
        if memory is not None:
            memory = self._size("resources", "memory", memory, MEMORY_RANGE_MB)
        return cpus, memory

    def _size(self, table: str, key: str, value: Any, bounds: tuple[int, int], index: int = 0) -> int:
        """A size like "256M", "1.5G" or a number of MB, in MB."""
        hint = f"use a size like \"256M\" or \"1G\" ({_mb(bounds[0])} to {_mb(bounds[1])})"
        if isinstance(value, bool):
            raise self.fail(table, key, f"{hint}, not {_show(value)}", index)
        if isinstance(value, int):
            mb = value
        elif isinstance(value, str) and SIZE.fullmatch(value.strip()):
            number, unit = SIZE.fullmatch(value.strip()).groups()
            mb = float(number) * UNITS_MB[unit.upper()]
            mb = int(mb) if math.isfinite(mb) else bounds[1] + 1  # "1" and 400 zeros: out of range
        else:
            raise self.fail(table, key, f"{hint}, not {_show(value)}", index)
        if not bounds[0] <= mb <= bounds[1]:
            raise self.fail(table, key, f"{_show(value)} is out of range: {hint}", index)
        return mb

    def _health(self) -> dict[str, Any]:
        health = self._table("health")
        self._only("health", health, ("path", "type", "grace"))
        path = health.get("path")
        if path is not None and (not isinstance(path, str) or not path.startswith("/") or any(c.isspace() for c in path)):
            raise self.fail("health", "path", f"must be a URL path starting with '/', like \"/healthz\", not {_show(path)}")
        kind = health.get("type", "http" if path else "tcp")
        if kind not in HEALTH_TYPES:
            raise self.fail("health", "type", f"{_show(kind)} is not a check type; allowed: {', '.join(HEALTH_TYPES)}")
        if kind == "http" and not path:
            raise self.fail("health", "type", "an http check needs a `path` to ask, like path = \"/healthz\"")
        rec: dict[str, Any] = {"type": kind}
        if kind == "http":
            rec["path"] = path
        if "grace" in health:
            rec["start_grace_s"] = self._int("health", "grace", health["grace"], *GRACE_RANGE_S)
        return rec

    def _env(self) -> dict[str, str] | None:
        if "env" not in self.data:
            return None
        env = self._table("env")
        for name, value in env.items():
            if not ENV_NAME.fullmatch(name):
                raise self.fail("env", name, "is not a valid variable name: use letters, digits and '_', "
                                             "not starting with a digit (at most 128)")
            if name in RESERVED_ENV:
                raise self.fail("env", name, "is set by vcapp from `port`; set `port` instead")
            if not isinstance(value, (str, int, float, bool)):
                raise self.fail("env", name, f"must be a string or number, not {_kind(value)}")
        out = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in env.items()}
        problem = env_problem(out)
        if problem:
            raise self.fail("env", None, problem)
        return out

    def _mounts(self) -> tuple[Mount, ...] | None:
        if "mounts" not in self.data:
            return None
        mounts = self.data["mounts"]
        if not isinstance(mounts, list):
            raise self.fail("", "mounts", "must be an array of tables: write each one as [[mounts]]")
        found: list[Mount] = []
        for i, m in enumerate(mounts):
            if not isinstance(m, dict):
                raise self.fail("", "mounts", "must be an array of tables: write each one as [[mounts]]")
            found.append(self._mount(m, i, found))
        return tuple(found)

    def _mount(self, m: dict, i: int, before: list[Mount]) -> Mount:
        self._only("mounts", m, ("source", "destination", "size"), i)
        source, dest = m.get("source"), m.get("destination")
        if not isinstance(source, str) or not VOLUME_NAME.fullmatch(source):
            raise self.fail("mounts", "source", f"must name a volume in lowercase letters, digits and '-', "
                                                f"like \"data\", not {_show(source)}", i)
        if not isinstance(dest, str) or not dest.startswith("/") or dest.rstrip("/") == "" or ".." in dest.split("/"):
            raise self.fail("mounts", "destination", f"must be an absolute path in the container like \"/data\" "
                                                     f"(not / and without '..'), not {_show(dest)}", i)
        if any(b.source == source or b.destination == dest for b in before):
            raise self.fail("mounts", None, f"volume {source!r} or path {dest!r} is already mounted above", i)
        size = self._size("mounts", "size", m["size"], VOLUME_RANGE_MB, i) if "size" in m else None
        return Mount(source, dest, size)

    def _access(self) -> str | None:
        if "access" not in self.data:
            return None
        access = self._table("access")
        self._only("access", access, ("policy",))
        policy = access.get("policy", "public")
        if policy not in POLICIES:
            raise self.fail("access", "policy", f"{_show(policy)} is not a policy; allowed: {', '.join(POLICIES)} "
                                                "(token: end users need a token from `vcapp tokens create`)")
        return policy


    def _processes(self) -> dict[str, str] | None:
        if "processes" not in self.data:
            return None
        procs = self._table("processes")
        if len(procs) > MAX_PROCESSES:
            raise self.fail("", "processes", f"has {len(procs)} process types; at most {MAX_PROCESSES}")
        for name, command in procs.items():
            if not PROCESS_NAME.fullmatch(name):
                raise self.fail("processes", name, "is not a process type name: 1-20 lower-case letters, digits, "
                                                   "'_' and '-', starting with a letter (like worker)")
            if not isinstance(command, str) or not command.strip() or len(command) > MAX_COMMAND or "\x00" in command:
                raise self.fail("processes", name, f"must be a command line like \"python worker.py\" (at most "
                                                   f"{MAX_COMMAND} characters), not {_show(command)}")
        return {k: v.strip() for k, v in procs.items()}


def env_problem(env: dict[str, str]) -> str | None:
    """Why an env (names already checked) is too big to keep, or None: the one size rule of
    vcapp.toml's [env] and the API's env."""
    for name, value in env.items():
        if "\x00" in value:
            return f"the value of {name} holds a NUL character, which no environment variable can carry"
        if len(value.encode()) > MAX_ENV_VALUE:
            return (f"the value of {name} is {len(value.encode())} bytes; each value may be at most "
                    f"{MAX_ENV_VALUE // 1024} KiB (put files in the image or a volume)")
    total = sum(len(k.encode()) + len(v.encode()) for k, v in env.items())
    if total > MAX_ENV_TOTAL:
        return (f"the env is {total} bytes in all; at most {MAX_ENV_TOTAL // 1024} KiB "
                "(put files in the image or a volume)")
    return None


def _kind(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "true/false", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, (dict, list)):
        return _kind(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def _mb(mb: int) -> str:
    for unit, size in (("T", 1024 * 1024), ("G", 1024)):
        if mb >= size and mb % size == 0:
            return f"{mb // size}{unit}"
    return f"{mb}M"


def parse(text: str, app: str | None = None) -> AppConfig:
    """Parse and validate vcapp.toml text; `app` is the app being deployed (checks `app = ...`)."""
    return _Parser(text, app).parse()


def defaults() -> AppConfig:
    """The config of an app whose repository has no vcapp.toml."""
    return AppConfig()
