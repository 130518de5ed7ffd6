"""The podman driver: run, start, stop, remove, list and read logs of vcapp containers.

Every container it makes carries labels (vcapp.app, vcapp.instance, vcapp.release,
vcapp.managed=true), so the actual state is read back from podman alone, never from memory.
Each app gets its own podman network created with `isolate=true`: netavark drops traffic
between isolated networks. The app's port is published on a host port this driver picks
(HOST_PORTS), reported back in `Container.host_port`, on this machine's loopback only
(PUBLISH_IP): nothing outside the machine (LAN, mesh, edge) and no container reaches it, so
the node router, which enforces the app's access policy, is the only way in. Environment and
secrets go through a 0600 env-file that is deleted right after `podman run`; command lines
with values are never logged.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from runtime import keptlogs
from runtime.shell import LocalShell, Shell
from runtime.spec import InstanceSpec

LABEL = "vcapp"
# Host ports handed to app containers: above the usual service ports, below the kernel's
# ephemeral range (32768+) so an outgoing connection never squats on one.
HOST_PORTS = range(20000, 30000)
PUBLISH_IP = "127.0.0.1"
# SIGTERM first; busybox-style PID 1 programs ignore it, so the grace stays short. A
# retired container (runtime/supervisor.py) gets its spec's kill_timeout instead.
STOP_GRACE_S = 5


class PodmanError(RuntimeError):
    """A podman command failed; the message carries podman's own words and what was asked."""


# A container that drains is renamed <its name><RETIRING_MARK><6 hex digits> first
# (runtime/supervisor.py Agent._retire), so that the same instance of the same release may start
# again on this machine at once under its own name: an instance moved away and back (a machine cut
# off for seconds, then chosen again by the next failover) otherwise waited out its old
# container's whole stop timeout, its start failing on "the container name is already in use".
RETIRING_MARK = "-retiring-"


def retiring_name(name: str) -> str:
    return f"{name}{RETIRING_MARK}{secrets.token_hex(3)}"


def named_before(name: str) -> str:
    """A container's name before its retirement renamed it."""
    return name.split(RETIRING_MARK, 1)[0]


@dataclass(frozen=True)
class Container:
    """One vcapp container as podman reports it."""

    id: str
    name: str
    app: str
    instance: str
    release: str
    state: str            # podman's: running, exited/stopped, created, ...
    exit_code: int
    started_at: float     # unix seconds, 0 if never
    exited_at: float
    host_port: int | None
    pid: int

    @property
    def key(self) -> str:
        return f"{self.app}/{self.instance}"

    @property
    def running(self) -> bool:
        return self.state == "running"


class PodmanDriver:
    def __init__(self, shell: Shell | None = None, cgroup_parent: str | None = None,
                 publish_ip: str = PUBLISH_IP, scratch_dir: Path | None = None, authfile: Path | None = None,
                 kept_logs: Path | None = None):
        self.shell = shell or LocalShell()
        self.kept_logs = kept_logs  # where a removed container's output is kept (runtime/keptlogs.py)
        self.authfile = authfile  # registry credentials (containers-auth.json) for the pulls of `podman run`
        self.cgroup_parent = cgroup_parent
        self.publish_ip = publish_ip
        self.scratch_dir = scratch_dir

    @classmethod
    def from_env(cls, shell: Shell | None = None, authfile: Path | None = None,
                 kept_logs: Path | None = None) -> "PodmanDriver":
        """Configured from $VCAPP_CGROUP_PARENT and $VCAPP_RUN_DIR when set."""
        run_dir = os.environ.get("VCAPP_RUN_DIR")
        return cls(shell, cgroup_parent=os.environ.get("VCAPP_CGROUP_PARENT") or None,
                   scratch_dir=Path(run_dir) if run_dir else None, authfile=authfile, kept_logs=kept_logs)

    def _podman(self, *args: str, what: str) -> str:
        proc = self.shell.run(["podman", *args])
        if proc.returncode != 0:
            err = "\n".join(l for l in proc.stderr.splitlines() if "syslog" not in l).strip()
            raise PodmanError(f"podman could not {what}: {err or proc.stdout.strip()}")
        return proc.stdout

    # ---- actual state ----------------------------------------------------------------

    def list(self) -> list[Container]:
        out = self._podman("ps", "-a", "--format", "json", "--filter", f"label={LABEL}.managed=true",
                           what="list containers")
        return [_container(rec) for rec in json.loads(out or "[]")]

    # ---- acting ------------------------------------------------------------------------

    def ensure_network(self, app: str, name: str) -> None:
        if self.shell.run(["podman", "network", "exists", name]).returncode == 0:
            return
        self._podman("network", "create", "--opt", "isolate=true", "--label", f"{LABEL}.app={app}", name,
                     what=f"create network {name} for app {app}")

    def run(self, spec: InstanceSpec, host_port: int | None, binds: dict[str, str] | None = None) -> None:
        """Create and start a container for `spec`, its port published on `host_port`;
        `binds`: volume name -> host path holding it (every volume of the spec needs one)."""
        missing = [v.source for v in spec.volumes if v.source not in (binds or {})]
        if missing:
            raise PodmanError(f"volumes {missing} of {spec.key} are not mounted on this machine")
        self.ensure_network(spec.app, spec.network)
        fd, env_file = tempfile.mkstemp(prefix="env-", dir=self.scratch_dir)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(_env_file(spec))
            self._podman(*self.run_args(spec, host_port, env_file, binds), what=f"start {spec.container_name}")
        finally:
            os.unlink(env_file)

    def run_args(self, spec: InstanceSpec, host_port: int | None, env_file: str,
                 binds: dict[str, str] | None = None) -> list[str]:
        args = ["run", "-d", "--name", spec.container_name, "--network", spec.network,
                "--hostname", f"{spec.app}-{spec.instance}", "--env-file", env_file,
                "--pids-limit", str(spec.pids), "--stop-timeout", str(spec.kill_timeout_s),
                "--log-driver", "k8s-file"]
        for k, v in (("app", spec.app), ("instance", spec.instance), ("release", spec.release), ("managed", "true")):
            args += ["--label", f"{LABEL}.{k}={v}"]
        if spec.memory_mb:
            # memory-swap equal to memory: no swap, so the limit is the limit
            args += ["--memory", f"{spec.memory_mb}m", "--memory-swap", f"{spec.memory_mb}m"]
        if spec.cpus:
            args += ["--cpus", f"{spec.cpus:g}"]
        if self.cgroup_parent:
            args += ["--cgroup-parent", self.cgroup_parent]
        if spec.port and host_port:
            args += ["-p", f"{self.publish_ip}:{host_port}:{spec.port}"]
        for v in spec.volumes:
            args += ["-v", f"{(binds or {})[v.source]}:{v.destination}"]
        if self.authfile:
            args += ["--authfile", str(self.authfile)]  # a file: the registry password never in argv
        return args + [spec.image, *spec.command]

    def is_running(self, name: str) -> bool:
        proc = self.shell.run(["podman", "inspect", "--format", "{{.State.Running}}", name])
        return proc.returncode == 0 and proc.stdout.strip() == "true"

    def start(self, name: str) -> None:
        self._podman("start", name, what=f"restart {name}")

    def restart(self, name: str) -> None:
        self._podman("restart", "-t", str(STOP_GRACE_S), name, what=f"restart {name}")

    def remove(self, name: str) -> None:
        if self.kept_logs is not None:  # its last lines first, once it has stopped writing them
            self.shell.run(["podman", "stop", "-t", str(STOP_GRACE_S), name])  # a failure: rm -f still removes
            self._keep_logs(name)
        self._podman("rm", "-f", "-t", str(STOP_GRACE_S), name, what=f"remove {name}")

    def rename(self, name: str, new_name: str) -> None:
        self._podman("rename", name, new_name, what=f"rename {name}")

    def pause(self, name: str) -> None:
        """Freeze every process of `name` (the cgroup freezer) until `unpause`: a write it was
        making completes first, no new one starts; its connections wait."""
        self._podman("pause", name, what=f"pause {name}")

    def unpause(self, name: str) -> None:
        self._podman("unpause", name, what=f"resume {name}")

    def retire(self, name: str) -> None:
        """SIGTERM, up to the container's own stop timeout (its spec's kill_timeout) for the
        requests in flight to finish, SIGKILL; then remove it."""
        self._podman("stop", name, what=f"stop {name}")
        self._keep_logs(name)
        self._podman("rm", "-f", name, what=f"remove {name}")

    def _keep_logs(self, name: str) -> None:
        """Keep a stopped container's last lines (kept_logs); never in the way of its removal."""
        if self.kept_logs is None:
            return
        proc = self.shell.run(["podman", "inspect", "--format", "{{json .Config.Labels}}", name])
        try:
            labels = json.loads(proc.stdout or "null") or {} if proc.returncode == 0 else {}
            app, instance = labels.get(f"{LABEL}.app"), labels.get(f"{LABEL}.instance")
            if app and instance:
                keptlogs.save(self.kept_logs, app, instance, labels.get(f"{LABEL}.release", ""), named_before(name),
                              self.logs(name, tail=keptlogs.KEEP_LINES))
        except (ValueError, AttributeError, OSError):
            pass

    def reload_network(self, name: str) -> None:
        """Write the firewall rules of `name` (its published port) again, without restarting it.
        The agent does this when a health check finds the port held but not forwarded
        (runtime/health.py: accepted_by_this_machine)."""
        self._podman("network", "reload", name, what=f"reload the network rules of {name}")

    def remove_unused_networks(self, apps_in_use: set[str]) -> None:
        out = self._podman("network", "ls", "--format", "{{.Name}}", "--filter", f"label={LABEL}.app",
                           what="list networks")
        for name in out.split():
            if name.startswith("vc-app-") and name[len("vc-app-"):] not in apps_in_use:
                self.shell.run(["podman", "network", "rm", name])

    def pick_host_port(self, taken: set[int]) -> int:
        """A host port no vcapp container holds and nothing on this machine listens on."""
        for port in HOST_PORTS:
            if port not in taken and _bindable(self.publish_ip, port):
                return port
        raise PodmanError(f"no free host port in {HOST_PORTS.start}-{HOST_PORTS.stop - 1}; "
                          "remove stopped containers or widen HOST_PORTS")

    # ---- logs --------------------------------------------------------------------------

    def logs(self, name: str, follow: bool = False, tail: int | None = None,
             since: float | None = None) -> Iterator[str]:
        """Lines of a container's output (stdout and stderr), following if asked; `since`: unix
        seconds, older lines left out."""
        argv = ["podman", "logs"] + (["--follow"] if follow else []) + (["--tail", str(tail)] if tail else []) \
            + (["--since", str(int(since))] if since is not None else [])
        proc = self.shell.popen(argv + [name])
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                yield line.decode(errors="replace").rstrip("\n") if isinstance(line, bytes) else line.rstrip("\n")
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def _container(rec: dict) -> Container:
    labels = rec.get("Labels") or {}
    ports = [p for p in rec.get("Ports") or [] if p.get("host_port")]
    state = rec.get("State", "")
    return Container(
        id=rec["Id"], name=rec["Names"][0], app=labels.get(f"{LABEL}.app", ""),
        instance=labels.get(f"{LABEL}.instance", ""), release=labels.get(f"{LABEL}.release", ""),
        state="exited" if state == "stopped" else state, exit_code=int(rec.get("ExitCode") or 0),
        started_at=float(rec.get("StartedAt") or 0), exited_at=float(rec.get("ExitedAt") or 0),
        host_port=int(ports[0]["host_port"]) if ports else None, pid=int(rec.get("Pid") or 0),
    )


def _env_file(spec: InstanceSpec) -> str:
    lines = []
    for k, v in {**spec.env, **spec.secrets}.items():
        if "\n" in v or "\n" in k:
            raise PodmanError(f"environment variable {k} of {spec.app} contains a newline; podman env-files "
                              "cannot carry it: encode the value (base64) in the app")
        lines.append(f"{k}={v}\n")
    return "".join(lines)


def _bindable(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
            return True
        except OSError:
            return False
