"""The node daemon as a boot service: a systemd unit where systemd runs the machine.

`cluster init` and `node join` install and start `vcapp-node.service` when systemd is PID 1
(as k3s and Nomad do), so a reboot or a crash brings the machine back; elsewhere (a container,
the simulator's machines) the daemon runs as a detached child of the command
(bootstrap.ensure_daemon). `node leave` stops and removes the unit.

The unit's ExecStart is the one command every machine boots: the simulator's boot service
(vcapp/dev/platform.py) runs `boot_argv()`, read back from the unit text, so the tests boot
exactly what systemd would.

KillMode=process: stopping or restarting the service signals only the daemon, which stops
its own children (etcd, Caddy, SeaweedFS) and leaves the app containers running (podman's
conmon keeps them); the next daemon adopts them, as after a crash. Delegate=yes lets podman
make the containers' cgroups below the service's.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

UNIT_NAME = "vcapp-node.service"
NODE_DESCRIPTION = "vcapp node daemon (etcd, API, runtime, router, storage, mesh)"
UNIT_DIR = Path("/etc/systemd/system")
# The variables that place a machine's state; kept in the unit when set at install time.
PLACED_BY = ("VCAPP_DATA_DIR", "VCAPP_RUN_DIR")
SYSTEMCTL_TIMEOUT = 90.0  # the daemon's graceful stop (TimeoutStopSec) plus slack


class ServiceError(RuntimeError):
    """systemctl refused; the message carries its words."""


def exec_start(python: str | None = None) -> list[str]:
    """The daemon's command: this Python (the venv vcapp is installed in), or `python`, running vcapp."""
    return [python or sys.executable, "-m", "vcapp", "node", "run"]


def _escaped(text: str) -> str:
    """systemd expands %-specifiers and $VARIABLES in ExecStart and Environment: keep them literal."""
    return text.replace("%", "%%").replace("$", "$$")


def unit_text(argv: list[str], env: dict[str, str], description: str = NODE_DESCRIPTION,
              kill_mode: str = "process", runs_containers: bool = True, after: tuple[str, ...] = ()) -> str:
    """A unit file for one of vcapp's daemons (pure); the defaults are the node daemon's.
    `runs_containers`: podman makes cgroups below it (Delegate) and needs the high limits."""
    environment = "".join(f"Environment={_escaped(shlex.quote(f'{k}={v}'))}\n" for k, v in sorted(env.items()))
    limits = ("Delegate=yes\nTimeoutStopSec=60\nLimitNOFILE=1048576\nLimitNPROC=infinity\nTasksMax=infinity\n"
              if runs_containers else "TimeoutStopSec=30\n")
    return f"""[Unit]
Description={description}
Wants=network-online.target
After={" ".join(("network-online.target", *after))}

[Service]
Type=simple
ExecStart={_escaped(shlex.join(argv))}
{environment}Restart=always
RestartSec=2
KillMode={kill_mode}
{limits}
[Install]
WantedBy=multi-user.target
"""


def exec_start_of(text: str) -> list[str]:
    """The ExecStart command line of a unit text (pure)."""
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            return [a.replace("$$", "$").replace("%%", "%") for a in shlex.split(line[len("ExecStart="):])]
    raise ValueError("the unit has no ExecStart line")


def placed_env() -> dict[str, str]:
    return {k: os.environ[k] for k in PLACED_BY if os.environ.get(k)}


def boot_argv(python: str | None = None) -> list[str]:
    """What a machine boots: the ExecStart of the unit this machine would get (with vcapp
    installed for `python`, by default this one)."""
    return exec_start_of(unit_text(exec_start(python), placed_env()))


def systemd_runs_this_machine() -> bool:
    """sd_booted(): systemd is PID 1 here (not in a container). A simulated machine
    ($VCAPP_DEV_CLUSTER, vcapp/dev/cluster.py host_env) shares its host's files and PID 1, and
    its boot services are the simulator's: it never touches the host's systemd."""
    return Path("/run/systemd/system").is_dir() and not os.environ.get("VCAPP_DEV_CLUSTER")


def unit_path(name: str = UNIT_NAME) -> Path:
    return UNIT_DIR / name


def installed(name: str = UNIT_NAME) -> bool:
    return unit_path(name).exists()


def enabled_state(name: str = UNIT_NAME) -> str | None:
    """What `systemctl is-enabled` says of the unit ("enabled", "disabled", "not-found", ...);
    None where systemd does not run this machine."""
    if not systemd_runs_this_machine():
        return None
    try:
        return subprocess.run(["systemctl", "is-enabled", name], capture_output=True, text=True,
                              timeout=SYSTEMCTL_TIMEOUT).stdout.strip() or "not-found"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _systemctl(*args: str) -> None:
    proc = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT)
    if proc.returncode != 0:
        raise ServiceError(f"systemctl {' '.join(args)}: {proc.stderr.strip() or f'exit {proc.returncode}'}")


def install_and_start(name: str = UNIT_NAME, text: str | None = None) -> None:
    """Write the unit, enable it at boot and start it now; a changed unit file is restarted
    with its new command, an unchanged running one is left as it is."""
    text = text if text is not None else unit_text(exec_start(), placed_env())
    path = unit_path(name)
    existed = path.exists()
    changed = not existed or path.read_text() != text
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        _systemctl("daemon-reload")
    _systemctl("enable", "--now", name)
    if changed and existed:
        _systemctl("try-restart", name)  # running the old command line: take the new one


def restart(name: str = UNIT_NAME) -> None:
    """Restart the unit (ServiceError with systemctl's words if it refuses)."""
    _systemctl("restart", name)


def stop_and_remove(name: str = UNIT_NAME) -> None:
    """Stop the daemon for good: disable the unit, stop it, remove its file."""
    _systemctl("disable", "--now", name)
    unit_path(name).unlink(missing_ok=True)
    _systemctl("daemon-reload")
