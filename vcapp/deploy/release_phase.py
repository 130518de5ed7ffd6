"""Commands in a release's image: the release phase (Heroku's) and one-off runs (`vcapp run`).

A release's `release:` command (its Procfile line, or vcapp.toml [processes] release) runs
once, in the new image, before any instance of the release is set to run; a non-zero exit
refuses the release and what served keeps serving. `vcapp run APP -- CMD` runs a command in
the current release the same way and hands back its output and exit status.

It runs with podman like a one-off instance: the release image pulled by digest from the
cluster registries (the machine's credential, its mirrors), the app's env, its secrets
(decrypted there, handed over in a mode-600 env file, never in argv), PORT, the app's memory
and CPU limits, its volumes, and a bounded time. Every line it prints goes to the push log;
on failure the reason names the command, its exit status and its last lines.

Where it runs follows the app's volumes, which have one writer machine at a time
(storage/guard.py):
    no volumes                       the machine that took the push
    a volume held by an instance     that instance's machine (asked over the machine API,
                                     POST /v1/releases/<app>/<n>/phase, its log relayed), in the
                                     same mount the serving release uses: a migration sees and
                                     changes the data the app serves
    volumes nobody holds (first      the machine that took the push: it takes the writer keys
    deploy, the app scaled to 0)     on a lease of its own (instance "release-phase-<container>"),
                                     mounts, runs, and gives them back
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets as secrets_module
import subprocess
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator

import requests

from storage import mount
from storage.host import StorageError
from vcapp import machine
from vcapp.deploy import remote_build
from vcapp.errors import VcError
from vcapp.machine import NodeConfig, cluster_key, data_dir, machine_secret
from vcapp.state import apps, keys, reposync, secrets, volumes
from vcapp.state.store import Store

# Migrations can be long (Heroku allows an hour); a push should not hang much longer than a build.
RELEASE_TIMEOUT_S = 900.0
RUN_TIMEOUT_S = 3600.0  # a one-off command (`vcapp run`): a long data fix, not a service
STOPPED = -1  # the exit status of a command stopped at its time limit
CONTAINER_NAME = re.compile(r"vc-(release|run)-[a-z0-9-]{1,80}")
TAIL_LINES = 5  # lines of its output quoted in the refusal
PULL_TIMEOUT_S = 300.0  # the image is in the cluster's registries, on the LAN
# The lease a release phase holds volumes' writer keys on: renewed every third of it, so a
# machine that dies mid-command frees the volumes within this long.
WRITER_LEASE_S = 15
# Every container of a release command or a one-off carries it (the volume compactor waits for them:
# vcapp/node/volume_compaction.py).
LABEL = "vcapp.release-phase=true"


# Runs a podman argv on a person's terminal (vcapp/deploy/console.py); answers the exit status.
Terminal = Callable[[list[str], "Job"], int]


class ReleaseFailed(Exception):
    """The release command failed; the message is what the pusher reads."""


def env_lines(env: dict[str, str]) -> str:
    """An --env-file body: one NAME=value a line (podman reads no quoting, so a value with a
    newline cannot be carried: refused as the runtime refuses it, runtime/podman.py)."""
    for name, value in env.items():
        if "\n" in value:
            raise ReleaseFailed(f"environment variable {name} contains a newline; podman env-files cannot carry "
                                "it: encode the value (base64) in the app")
    return "".join(f"{k}={v}\n" for k, v in env.items())


@dataclass(frozen=True)
class Job:
    """One command in a release's image: the release phase (kind "release", once per release,
    its exit refuses the release) or a one-off `vcapp run` (kind "run", its exit code is the
    admin's). `name` is its container's, unique on the machine."""

    kind: str
    number: int
    name: str
    timeout: float

    @classmethod
    def release(cls, app: str, number: int, timeout: float = RELEASE_TIMEOUT_S) -> Job:
        return cls("release", number, f"vc-release-{app}-{number}", timeout)

    @classmethod
    def one_off(cls, app: str, number: int, timeout: float = RUN_TIMEOUT_S) -> Job:
        return cls("run", number, f"vc-run-{app}-{secrets_module.token_hex(4)}", timeout)

    def to_json(self) -> dict:
        return {"kind": self.kind, "number": self.number, "name": self.name, "timeout": self.timeout}

    @classmethod
    def from_json(cls, doc: dict) -> Job:
        kind, name, timeout = doc.get("kind"), doc.get("name"), doc.get("timeout")
        if kind not in ("release", "run") or not isinstance(name, str) or not CONTAINER_NAME.fullmatch(name) \
                or not isinstance(timeout, (int, float)) or not 0 < timeout <= RUN_TIMEOUT_S:
            raise VcError("a job needs kind release|run, a container name and a timeout")
        return cls(kind, int(doc.get("number") or 0), name, float(timeout))


@dataclass(frozen=True)
class Outcome:
    code: int  # the command's exit status (-1: stopped at its time limit)
    seconds: float
    tail: tuple[str, ...]  # its last lines


def command_args(app: str, number: int, image: str, command: str, env_file: str, spec: dict,
                 binds: dict[str, str] | None = None, name: str | None = None, tty: bool = False) -> list[str]:
    """The podman run argv for a command in the release image (pure: tested as data);
    `binds`: host path -> path in the container, for the app's volumes; `tty`: on a terminal."""
    argv = ["podman", "run", "--rm", *(["-i", "-t"] if tty else []), "--pull", "never",
            "--name", name or f"vc-release-{app}-{number}",
            "--env-file", env_file, "--label", LABEL,
            "--pids-limit", str(spec.get("pids") or apps.DEFAULT_PIDS)]
    for host, inside in (binds or {}).items():
        argv += ["-v", f"{host}:{inside}"]
    if spec.get("memory_mb"):
        argv += ["--memory", f"{spec['memory_mb']}m", "--memory-swap", f"{spec['memory_mb']}m"]
    if spec.get("cpus"):
        argv += ["--cpus", f"{float(spec['cpus']):g}"]
    return argv + [image, "sh", "-c", command]


def pull_args(image: str, authfile: str | None) -> list[str]:
    """Pulled apart from the run, so the refusal quotes the command's last lines, not the pull's."""
    return ["podman", "pull", *(["--authfile", authfile] if authfile else []), image]


def run(store: Store, app: str, number: int, image: str, command: str, config: dict, log: Callable[[str], None],
        timeout: float = RELEASE_TIMEOUT_S) -> float:
    """The release phase: release `number`'s command where the app's volumes are (module
    docstring); its seconds when it exits 0, else ReleaseFailed."""
    log(f"-----> release phase: running `{command}` in v{number}")
    outcome = execute(store, app, Job.release(app, number, timeout), image, command, config, log)
    if outcome.code == STOPPED:
        raise ReleaseFailed(f"release command `{command}` ran past {timeout:.0f} s and was stopped")
    if outcome.code != 0:
        last = " | ".join(line for line in outcome.tail if line.strip()) or "(no output)"
        raise ReleaseFailed(f"release command `{command}` exited {outcome.code}: {last}")
    log(f"-----> release phase done in {outcome.seconds:.1f} s")
    return outcome.seconds


def execute(store: Store, app: str, job: Job, image: str, command: str, config: dict,
            log: Callable[[str], None], here_only: bool = False, terminal: Terminal | None = None) -> Outcome:
    """Run `command` in `image` with the app's env, secrets and volumes where the volumes are;
    its output line by line to `log`, or, with a `terminal`, on it. ReleaseFailed when it cannot
    run at all. `here_only`: another machine sent it here (it is not sent on again)."""
    spec = apps.get_app(store, app)
    mounts = spec.get("volumes") or []
    if not mounts:
        return _run_here(store, app, job, image, command, config, log, spec, {}, terminal)
    node = NodeConfig.load()
    if node is None:
        raise ReleaseFailed("this machine is not in a cluster (no node.json): the app's volumes cannot be reached")
    holder = volume_holder(store, app, mounts)
    if holder is not None and holder != node.name:
        if here_only or terminal is not None:
            raise ReleaseFailed(f"the app's volumes moved to {holder} meanwhile; run it again")
        return _run_on(store, holder, app, job, image, command, config, log)
    with _volumes_here(store, node, app, job, mounts, held=holder is not None, log=log) as binds:
        return _run_here(store, app, job, image, command, config, log, spec, binds, terminal)


def volume_holder(store: Store, app: str, mounts: list[dict]) -> str | None:
    """The machine holding the app's volumes for writing (its instance runs there), or None."""
    for m in mounts:
        record = store.value(keys.storage_writer(app, m["source"]))
        if isinstance(record, dict) and record.get("node"):
            return record["node"]
    return None


def _run_on(store: Store, holder: str, app: str, job: Job, image: str, command: str, config: dict,
            log: Callable[[str], None]) -> Outcome:
    """Ask `holder` to run the job, where the volumes are; relay its output."""
    if holder not in reposync.live_apis(store):
        raise ReleaseFailed(f"{holder} holds the app's volumes but does not answer; try again once it is "
                            "back or its instance has moved")
    log(f"-----> sent to {holder}, which holds the app's volumes")
    doc = {"image": image, "command": command, "config": config, "job": job.to_json()}
    return relay(store, holder, f"/v1/releases/{app}/{job.number}/phase", doc, log, ReleaseFailed)


def relay(store: Store, node: str, path: str, doc: dict, log: Callable[[str], None],
          failure: type[Exception]) -> Outcome:
    """POST `doc` to a command-running endpoint of live machine `node` (api/streamed.py), relay
    its output to `log`; its Outcome. `failure(why)` when it refuses or stops answering."""
    api = reposync.live_apis(store).get(node)
    if api is None:
        raise failure(f"{node} does not answer")
    try:
        result = remote_build.call(f"http://{api}{path}", json.dumps(doc).encode(), "application/json",
                                  machine_secret(cluster_key()), log, node, failure)
    except requests.RequestException as e:
        raise failure(f"{node} stopped answering while it ran the command ({type(e).__name__})") from None
    return Outcome(int(result["code"]), float(result["seconds"]), tuple(result.get("tail") or ()))


@contextlib.contextmanager
def _volumes_here(store: Store, node: NodeConfig, app: str, job: Job, mounts: list[dict], held: bool,
                  log: Callable[[str], None]) -> Iterator[dict[str, str]]:
    """The app's volumes mounted here: {host path: path in the container}. `held`: an
    instance here holds them and they are mounted already; else this job takes their writer
    keys on a lease of its own for as long as it runs."""
    base = data_dir()
    if held:
        binds = {}
        for m in mounts:
            path = volumes.mount_path(base, app, m["source"])
            try:
                mount.verify_mounted(path)
            except StorageError as e:
                raise ReleaseFailed(f"volume {m['source']} is held here but not mounted ({e}); try again "
                                    "once its instance is running") from None
            binds[str(path)] = m["destination"]
        log(f"-----> on {node.name}, in the volumes its instance uses")
        yield binds
        return
    instance = volumes.release_phase_instance(job.name)
    lease = store.grant(WRITER_LEASE_S)
    stop = threading.Event()
    renew = threading.Thread(target=renew_lease, args=(store, lease, WRITER_LEASE_S, stop), daemon=True)
    renew.start()
    taken: list[str] = []
    try:
        binds = {}
        for m in mounts:
            try:
                path = volumes.mount_for_instance(store, node, lease, base, app, instance, m["source"],
                                                  m.get("size_mb"))
            except (StorageError, VcError) as e:
                raise ReleaseFailed(f"volume {m['source']} cannot be mounted for the command: {e}") from None
            taken.append(m["source"])
            binds[path] = m["destination"]
        log(f"-----> volume{'s' if len(mounts) > 1 else ''} {', '.join(m['source'] for m in mounts)} "
            f"mounted on {node.name}")
        yield binds
    finally:
        for source in taken:
            volumes.give_back(store, node, base, app, source, instance, lease)
        stop.set()
        store.revoke(lease)


def renew_lease(store: Store, lease: int, ttl: float, stop: threading.Event) -> None:
    """Keep `lease` alive (every third of its `ttl`) until `stop` is set."""
    while not stop.wait(ttl / 3):
        try:
            store.keepalive(lease)
        except Exception:  # a missed renewal is retried; the lease outlives two of them
            continue


def _run_here(store: Store, app: str, job: Job, image: str, command: str, config: dict,
              log: Callable[[str], None], spec: dict, binds: dict[str, str], terminal: Terminal | None) -> Outcome:
    env = {**(spec.get("env") or {}), **(config.get("env") or {}), **secrets.values_for(store, app),
           "PORT": str(config.get("port") or spec.get("port") or 8080)}
    auth = machine.registry_auth_file()
    authfile = str(auth) if auth.is_file() else None
    try:
        pulled = subprocess.run(pull_args(image, authfile), capture_output=True, text=True, errors="replace",
                                timeout=PULL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ReleaseFailed(f"could not pull the release image {image} within {PULL_TIMEOUT_S:.0f} s") from None
    if pulled.returncode != 0:
        last = (pulled.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ReleaseFailed(f"could not pull the release image {image} to run the command: {last}")
    indent = "       " if job.kind == "release" else ""
    started, tail = time.monotonic(), deque(maxlen=TAIL_LINES)
    with tempfile.NamedTemporaryFile("w", prefix="vcapp-release-", suffix=".env") as f:
        os.chmod(f.name, 0o600)
        f.write(env_lines(env))
        f.flush()
        argv = command_args(app, job.number, image, command, f.name, spec, binds, job.name, tty=terminal is not None)
        if terminal is not None:
            code = terminal(argv, job)
            return Outcome(code, time.monotonic() - started, ())
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        timer = threading.Timer(job.timeout, _stop, (proc, job.name))
        timer.start()
        try:
            for line in proc.stdout:
                line = line.rstrip("\n")
                tail.append(line)
                log(f"{indent}{line}")
            code = proc.wait()
        finally:
            timer.cancel()
    seconds = time.monotonic() - started
    return Outcome(STOPPED if seconds >= job.timeout else code, seconds, tuple(tail))


def _stop(proc: subprocess.Popen, name: str) -> None:
    subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True)
    proc.kill()
