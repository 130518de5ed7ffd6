"""The release phase (Heroku's): a release's `release:` command (its Procfile line, or
vcapp.toml [processes] release) runs once, in the new image, before any instance of the
release is set to run; a non-zero exit refuses the release and what served keeps serving.

It runs with podman on the machine that took the push, like a one-off instance: the release
image pulled by digest from the cluster registries (this machine's credential, its mirrors),
the app's env, its secrets (decrypted here, handed over in a mode-600 env file, never in argv),
PORT, the app's memory and CPU limits, and a bounded time. Every line it prints goes to the
push log; on failure the reason names the command, its exit status and its last lines.
App volumes are not mounted: a volume has one writer at a time (storage/guard.py) and the
serving release holds it, so a release command keeps to what it reaches over the network
(a database, a bucket).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections import deque
from typing import Callable

from vcapp import apps, secrets
from vcapp.node import registry_loop
from vcapp.store import Store

# Migrations can be long (Heroku allows an hour); a push should not hang much longer than a build.
RELEASE_TIMEOUT_S = 900.0
TAIL_LINES = 5  # lines of its output quoted in the refusal
PULL_TIMEOUT_S = 300.0  # the image is in the cluster's registries, on the LAN


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


def command_args(app: str, number: int, image: str, command: str, env_file: str, spec: dict) -> list[str]:
    """The podman run argv for the release command (pure: tested as data)."""
    argv = ["podman", "run", "--rm", "--pull", "never", "--name", f"vc-release-{app}-{number}",
            "--env-file", env_file, "--label", "vcapp.release-phase=true",
            "--pids-limit", str(spec.get("pids") or apps.DEFAULT_PIDS)]
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
    """Run release `number`'s command; its seconds when it exits 0, else ReleaseFailed."""
    spec = apps.get_app(store, app)
    env = {**(spec.get("env") or {}), **(config.get("env") or {}), **secrets.values_for(store, app),
           "PORT": str(config.get("port") or spec.get("port") or 8080)}
    auth = registry_loop.auth_file()
    log(f"-----> release phase: running `{command}` in v{number}")
    authfile = str(auth) if auth.is_file() else None
    try:
        pulled = subprocess.run(pull_args(image, authfile), capture_output=True, text=True, errors="replace",
                                timeout=PULL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ReleaseFailed(f"could not pull the release image {image} within {PULL_TIMEOUT_S:.0f} s") from None
    if pulled.returncode != 0:
        last = (pulled.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ReleaseFailed(f"could not pull the release image {image} to run the release command: {last}")
    started, tail = time.monotonic(), deque(maxlen=TAIL_LINES)
    with tempfile.NamedTemporaryFile("w", prefix="vcapp-release-", suffix=".env") as f:
        os.chmod(f.name, 0o600)
        f.write(env_lines(env))
        f.flush()
        argv = command_args(app, number, image, command, f.name, spec)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        timer = threading.Timer(timeout, _stop, (proc, f"vc-release-{app}-{number}"))
        timer.start()
        try:
            for line in proc.stdout:
                line = line.rstrip("\n")
                tail.append(line)
                log(f"       {line}")
            code = proc.wait()
        finally:
            timer.cancel()
    seconds = time.monotonic() - started
    if seconds >= timeout:
        raise ReleaseFailed(f"release command `{command}` ran past {timeout:.0f} s and was stopped")
    if code != 0:
        last = " | ".join(line for line in tail if line.strip()) or "(no output)"
        raise ReleaseFailed(f"release command `{command}` exited {code}: {last}")
    log(f"-----> release phase done in {seconds:.1f} s")
    return seconds


def _stop(proc: subprocess.Popen, name: str) -> None:
    subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True)
    proc.kill()
