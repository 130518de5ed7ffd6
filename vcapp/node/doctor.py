"""`vcapp doctor`: can this machine run vcapp, and once it has joined, does it work with the
cluster? Like `k3s check-config` and `tailscale netcheck` in one.

Each check observes (a file, a command, one request) and a pure judge turns what it saw into
a Check: ok, warn (works, but the admin should know), fail (vcapp cannot work so) or skip
(not applicable yet, e.g. the cluster checks before `vcapp node join`). A warn or a fail says
what to do. The checks before joining need nothing but the machine; after joining they read
node.json and the mesh credential, and ask the other machines and the edge one request each.
"""

from __future__ import annotations

import json
import platform
import resource
import shutil
import stat
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

from router.caddy import caddy_binary
from storage.host import weed_binary

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"

# Debian 12 ships 6.1; WireGuard's TUN path and cgroup v2's controllers want a 5.x kernel.
MIN_KERNEL = (5, 4)
# Below this the next image pull or build fails; below the second a few releases fill it.
DISK_FAIL_BYTES, DISK_WARN_BYTES = 2 << 30, 10 << 30
# Mesh proofs are accepted within mesh/auth.PROOF_WINDOW (120 s) of the edge's clock; leases
# and events are read by people across machines: NTP keeps real machines within a second.
SKEW_WARN_S, SKEW_FAIL_S = 1.0, 60.0
NOFILE_WANTED = 65536
REQUEST_TIMEOUT = 5.0
CONTROLLERS = ("cpu", "memory", "pids")
PACKAGES = {"podman": "podman", "buildah": "buildah", "runc": "runc", "etcd": "etcd-server",
            "wireguard-go": "wireguard-go", "fusermount3": "fuse3", "iptables": "iptables", "ip": "iproute2"}


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str  # what was seen
    fix: str = ""  # what to do, for warn and fail


# ---- judges (pure) ------------------------------------------------------------------------

def judge_kernel(release: str) -> Check:
    try:
        version = tuple(int(p) for p in release.split("-", 1)[0].split(".")[:2])
    except ValueError:
        return Check("kernel", WARN, f"Linux {release}: version not understood", "use Debian 12's kernel (6.1)")
    if version < MIN_KERNEL:
        return Check("kernel", FAIL, f"Linux {release}",
                     f"a kernel {MIN_KERNEL[0]}.{MIN_KERNEL[1]} or newer is needed; Debian 12 ships 6.1")
    return Check("kernel", OK, f"Linux {release}")


def judge_cgroups(mounts: str, unified_controllers: str | None) -> Check:
    """From /proc/self/mounts and /sys/fs/cgroup/cgroup.controllers (None when absent)."""
    rows = [line.split() for line in mounts.splitlines() if len(line.split()) >= 4]
    if any(r[1] == "/sys/fs/cgroup" and r[2] == "cgroup2" for r in rows):
        have = set((unified_controllers or "").split())
        missing = [c for c in CONTROLLERS if c not in have]
        if missing:
            return Check("cgroups", FAIL, f"cgroup v2 without the {', '.join(missing)} controller(s)",
                         "boot with systemd.unified_cgroup_hierarchy=1 and no cgroup_disable= on the kernel line")
        return Check("cgroups", OK, f"cgroup v2 ({' '.join(sorted(have & set(CONTROLLERS)))})")
    v1 = {opt for r in rows if r[2] == "cgroup" for opt in r[3].split(",")}
    missing = [c for c in CONTROLLERS if c not in v1]
    if missing:
        return Check("cgroups", FAIL, f"no cgroup {', '.join(missing)} controller mounted",
                     "mount the cgroup hierarchy (systemd does at boot) so containers can be limited")
    return Check("cgroups", WARN, "cgroup v1 (hybrid layout): containers run with runc, not crun",
                 "works; cgroup v2 (Debian 12's default) is what podman is best tested on")


def judge_runtime(info: dict | None, error: str = "") -> Check:
    """From `podman info --format json`."""
    if info is None:
        return Check("podman", FAIL, f"podman does not answer: {error}"[:300],
                     "apt-get install -y podman runc, then run `podman info` to see what it says")
    version = str((info.get("version") or {}).get("Version", "?"))
    runtime = ((info.get("host") or {}).get("ociRuntime") or {})
    name, path = runtime.get("name", "?"), runtime.get("path", "?")
    try:
        major = int(version.split(".", 1)[0])
    except ValueError:
        major = 0
    if major < 4:
        return Check("podman", FAIL, f"podman {version}", "podman 4 or newer is needed (Debian 12: apt-get install podman)")
    if name != "runc":
        return Check("podman", WARN, f"podman {version} with {name} ({path})",
                     "crun fails on hybrid cgroup layouts: set runtime = \"runc\" in "
                     "/etc/containers/containers.conf.d/50-vcapp.conf (scripts/install writes it)")
    return Check("podman", OK, f"podman {version} with runc ({path})")


def judge_tool(name: str, path: str | None) -> Check:
    if path:
        return Check(name, OK, path)
    package = PACKAGES.get(name, name)
    return Check(name, FAIL, f"{name} is not installed (not on PATH)", f"apt-get install -y {package}")


def judge_device(name: str, path: Path, is_char: bool, package: str, why: str) -> Check:
    if is_char:
        return Check(name, OK, f"{path}")
    return Check(name, FAIL, f"no {path}: {why}",
                 f"load the module (modprobe {path.name}) or give the container/VM the device; apt-get install -y {package}")


def judge_disk(path: Path, free: int | None) -> Check:
    if free is None:
        return Check("disk", FAIL, f"{path} cannot be read", f"create {path} on a disk with room (vcapp keeps images, "
                     "builds and app data there)")
    text = f"{free / (1 << 30):.1f} GiB free at {path}"
    if free < DISK_FAIL_BYTES:
        return Check("disk", FAIL, text, f"free space at {path}: builds and image pulls need at least "
                     f"{DISK_FAIL_BYTES >> 30} GiB (`podman system prune` removes unused images)")
    if free < DISK_WARN_BYTES:
        return Check("disk", WARN, text, f"{DISK_WARN_BYTES >> 30} GiB or more leaves room for a few releases")
    return Check("disk", OK, text)


def judge_nofile(hard: int) -> Check:
    if hard >= NOFILE_WANTED or hard == resource.RLIM_INFINITY:
        return Check("ulimits", OK, f"open files: hard limit {hard}")
    return Check("ulimits", WARN, f"open files: hard limit {hard} (< {NOFILE_WANTED})",
                 "containers get at most this many open files; raise LimitNOFILE (systemd) or nofile in "
                 "/etc/security/limits.conf")


def judge_daemon(pid: int | None, log: Path, unit: str | None) -> Check:
    """`unit`: what `systemctl is-enabled vcapp-node.service` says, None where systemd does not
    run the machine (the daemon is then a detached child of `cluster init`/`node join`)."""
    name = "vcapp-node.service"
    if pid and unit in (None, "enabled"):
        return Check("daemon", OK, f"vcapp node run is running (pid {pid})" + (f", {name} enabled" if unit else ""))
    if pid:
        return Check("daemon", WARN, f"vcapp node run is running (pid {pid}) but {name} is {unit}: nothing starts "
                     "it after a reboot", f"systemctl enable {name}")
    if unit is not None:
        return Check("daemon", FAIL, f"the node daemon is not running ({name} {unit}): this machine serves nothing",
                     f"systemctl enable --now {name}; `journalctl -u {name}` says why it stopped")
    return Check("daemon", FAIL, "the node daemon is not running: this machine serves nothing",
                 f"start it with `vcapp node run` (in the background; its log: {log}), then check `vcapp status`")


def judge_skew(offsets: dict[str, float | None]) -> Check:
    """Seconds each other machine's clock is ahead of ours (None: it did not answer)."""
    heard = {n: o for n, o in offsets.items() if o is not None}
    silent = sorted(n for n, o in offsets.items() if o is None)
    if not offsets:
        return Check("clock", SKIP, "no other machine to compare with")
    if not heard:
        return Check("clock", FAIL, f"no other machine answered ({', '.join(silent)})",
                     "check the mesh (`vcapp mesh status`) and that their daemons run")
    worst = max(heard, key=lambda n: abs(heard[n]))
    text = f"largest offset {heard[worst]:+.2f} s ({worst}) across {len(heard)} machine(s)" + \
        (f"; {', '.join(silent)} did not answer" if silent else "")
    if abs(heard[worst]) >= SKEW_FAIL_S:
        return Check("clock", FAIL, text, "the edge refuses this machine's mesh requests beyond 120 s: "
                     "run an NTP client (apt-get install -y systemd-timesyncd or chrony)")
    if abs(heard[worst]) >= SKEW_WARN_S or silent:
        return Check("clock", WARN, text, "keep clocks in step with NTP (systemd-timesyncd or chrony); "
                     "a machine that did not answer may be down: `vcapp status`")
    return Check("clock", OK, text)


def judge_edge(coord_error: str | None, status: int, peers: int, config_path: Path) -> Check:
    if coord_error is None:
        return Check("edge", OK, f"the edge knows this machine ({peers} other machine(s) on the mesh)")
    if status == 403:
        return Check("edge", FAIL, f"the edge refuses this machine: {coord_error}"[:300],
                     "this machine was removed or its credential is wrong: `vcapp node leave`, then join again "
                     "with a new join token")
    return Check("edge", FAIL, f"the edge does not answer: {coord_error}"[:300],
                 f"check this machine's internet access and the edge's address in {config_path} "
                 "(mesh.coord_url); the edge needs its coordination port open (TCP and UDP)")


def judge_udp(reached: bool | None, target: str) -> Check:
    if reached is None:
        return Check("udp", SKIP, "no edge to probe yet: `vcapp doctor --edge URL` probes the one you will use")
    if reached:
        return Check("udp", OK, f"UDP to the edge at {target} comes back: direct WireGuard paths can work")
    return Check("udp", WARN, f"UDP to the edge at {target} gets no answer",
                 "this site blocks outgoing UDP: the mesh falls back to the edge's TCP relay (slower); allow "
                 "UDP out to the edge's port for direct paths")


# ---- observations --------------------------------------------------------------------------

def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _is_char(path: Path) -> bool:
    try:
        return stat.S_ISCHR(path.stat().st_mode)
    except OSError:
        return False


def _podman_info() -> tuple[dict | None, str]:
    try:
        proc = subprocess.run(["podman", "info", "--format", "json"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)
    if proc.returncode != 0:
        return None, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
    try:
        return json.loads(proc.stdout), ""
    except ValueError:
        return None, "podman info printed no JSON"


def _free_bytes(path: Path) -> int | None:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent  # not made yet: the disk it will be made on
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def _bundled(find) -> str | None:
    """A binary scripts/install puts beside our Python (router/caddy.py, storage/host.py find it)."""
    try:
        return find()
    except RuntimeError:
        return None


def machine_checks(data_dir: Path) -> list[Check]:
    """What this machine needs before it can join: kernel, cgroups, tools, devices, disk."""
    checks = [judge_kernel(platform.release()),
              judge_cgroups(_read("/proc/self/mounts") or "", _read("/sys/fs/cgroup/cgroup.controllers")),
              judge_runtime(*_podman_info())]
    checks += [judge_tool(t, shutil.which(t)) for t in ("buildah", "runc", "etcd", "wireguard-go", "fusermount3",
                                                           "iptables", "ip")]
    checks += [judge_tool("caddy", _bundled(caddy_binary)), judge_tool("weed", _bundled(weed_binary))]
    checks += [judge_device("tun", Path("/dev/net/tun"), _is_char(Path("/dev/net/tun")), "wireguard-go",
                            "wireguard-go makes the mesh's interface on it"),
               judge_device("fuse", Path("/dev/fuse"), _is_char(Path("/dev/fuse")), "fuse3",
                            "app volumes are mounted through it"),
               judge_disk(data_dir, _free_bytes(data_dir)),
               judge_nofile(resource.getrlimit(resource.RLIMIT_NOFILE)[1])]
    return checks


def clock_offsets(hosts: dict[str, str]) -> dict[str, float | None]:
    """{name: seconds its clock is ahead of ours} from each /healthz's `time` (None: no answer).
    The request's midpoint stands for the moment the other machine read its clock."""
    out: dict[str, float | None] = {}
    for name, url in hosts.items():
        try:
            before = time.time()
            answer = requests.get(f"{url}/healthz", timeout=REQUEST_TIMEOUT).json()
            after = time.time()
            out[name] = float(answer["time"]) - (before + after) / 2
        except (requests.RequestException, ValueError, KeyError, TypeError):
            out[name] = None
    return out


def probe_udp(coord_url: str) -> tuple[bool, str]:
    from mesh import coord

    url = urlsplit(coord_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    return coord.udp_probe(url.hostname or "", port), f"{url.hostname}:{port}"


def cluster_checks(data_dir: Path) -> list[Check]:
    """Once joined: the daemon, the clocks of the other machines, the edge and UDP to it."""
    from mesh import coord
    from vcapp import machine
    from vcapp.node import daemon, service

    cfg = machine.NodeConfig.load()
    if cfg is None:
        return [Check(name, SKIP, "not in a cluster yet (`vcapp cluster init` or `vcapp node join`)")
                for name in ("daemon", "clock", "edge")] + [judge_udp(None, "")]
    checks = [judge_daemon(daemon.running_pid(), data_dir / "log" / "node.log", service.enabled_state())]
    hosts = {}
    for url in cfg.endpoints:
        host = urlsplit(url).hostname
        if host and host != cfg.addr:
            hosts[host] = f"http://{host}:{cfg.api_port}"
    checks.append(judge_skew(clock_offsets(hosts)))
    if cfg.mesh is None:
        checks += [Check("edge", SKIP, "this cluster has no edge"), Check("udp", SKIP, "this cluster has no edge")]
        return checks
    try:
        credential = machine.mesh_credential_path().read_text().strip()
        view = coord.Client(cfg.mesh.coord_url, coord.Identity(cfg.name, cfg.mesh.ip, credential)).peers(0, 0)
        checks.append(judge_edge(None, 200, len(view.get("peers", [])), machine.config_path()))
    except OSError as e:
        checks.append(judge_edge(f"no mesh credential on this machine ({e.strerror})", 403, 0, machine.config_path()))
    except coord.CoordError as e:
        checks.append(judge_edge(str(e), e.status, 0, machine.config_path()))
    checks.append(judge_udp(*probe_udp(cfg.mesh.coord_url)))
    return checks


def run(data_dir: Path, edge: str | None = None) -> list[Check]:
    checks = machine_checks(data_dir) + cluster_checks(data_dir)
    if edge:  # before joining: can this site reach the edge it will use over UDP?
        checks = [c for c in checks if c.name != "udp"] + [judge_udp(*probe_udp(edge))]
    return checks


def healthy(checks: list[Check]) -> bool:
    return not any(c.status == FAIL for c in checks)


def as_json(checks: list[Check]) -> dict:
    return {"ok": healthy(checks), "checks": [asdict(c) for c in checks]}
