"""Network plumbing for the simulated cluster: namespaces, veth cables, bridges, NAT rules.

Everything is created inside the cluster's own namespaces (a veth is born with both ends
already in their namespaces), so the host's own network never sees an interface, a route or
a rule of ours, and deleting a namespace deletes all it held.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

NETNS_DIR = Path("/var/run/netns")


class CommandError(RuntimeError):
    """A system command failed; carries its stderr so the caller can say why."""


def run(cmd: list[str], check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input)
    if check and proc.returncode != 0:
        raise CommandError(f"{' '.join(cmd)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def ns_path(ns: str) -> Path:
    return NETNS_DIR / ns


def enter(ns: str) -> list[str]:
    """Command prefix to run in a namespace. Not `ip netns exec`: it remounts /sys and hides
    the cgroup mounts that podman needs."""
    return ["nsenter", f"--net={ns_path(ns)}", "--"]


def ns_exec(ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(enter(ns) + list(cmd), check=check)


def exists(ns: str) -> bool:
    return ns_path(ns).exists()


def list_namespaces(prefix: str) -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


def add(ns: str) -> None:
    """A namespace whose new links get no IPv6 link-local address. The simulated network is
    IPv4; a link-local address finishing duplicate detection a second after its link comes up
    is a netlink change that Chromium takes for a new network and aborts a page load on
    (net::ERR_NETWORK_CHANGED). Loopback keeps ::1."""
    if not exists(ns):
        run(["ip", "netns", "add", ns])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    sysctl(ns, "net.ipv6.conf.default.addr_gen_mode", "1")


def delete(ns: str) -> None:
    if exists(ns):
        run(["ip", "netns", "delete", ns], check=False)
    if ns_path(ns).exists():  # a stale name whose bind mount is already gone
        os.unlink(ns_path(ns))


def sysctl(ns: str, key: str, value: str) -> None:
    ns_exec(ns, "sysctl", "-q", "-w", f"{key}={value}")


def has_link(ns: str, name: str) -> bool:
    return run(["ip", "-n", ns, "link", "show", name], check=False).returncode == 0


def add_bridge(ns: str, name: str) -> None:
    if not has_link(ns, name):
        run(["ip", "-n", ns, "link", "add", name, "type", "bridge"])
    run(["ip", "-n", ns, "link", "set", name, "up"])


def add_cable(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    """A veth pair with one end in each namespace."""
    if has_link(ns_a, name_a):
        return
    run(["ip", "-n", ns_a, "link", "add", name_a, "type", "veth", "peer", "name", name_b, "netns", ns_b])


def set_master(ns: str, name: str, bridge: str | None) -> None:
    if bridge:
        run(["ip", "-n", ns, "link", "set", name, "master", bridge])
    else:
        run(["ip", "-n", ns, "link", "set", name, "nomaster"])


def set_up(ns: str, name: str, up: bool = True) -> None:
    run(["ip", "-n", ns, "link", "set", name, "up" if up else "down"])


def set_addr(ns: str, name: str, cidr: str) -> None:
    run(["ip", "-n", ns, "addr", "flush", "dev", name])
    run(["ip", "-n", ns, "addr", "add", cidr, "dev", name])


def set_default_route(ns: str, gateway: str) -> None:
    run(["ip", "-n", ns, "route", "replace", "default", "via", gateway])


def link_master(ns: str, name: str) -> str | None:
    out = run(["ip", "-n", ns, "-o", "link", "show", name], check=False).stdout
    parts = out.split()
    return parts[parts.index("master") + 1] if "master" in parts else None


def link_is_up(ns: str, name: str) -> bool:
    out = run(["ip", "-n", ns, "-o", "link", "show", name], check=False).stdout
    return "state UP" in out or ",UP" in out.split(">")[0]


def addresses(ns: str) -> dict[str, list[str]]:
    """interface -> IPv4 addresses with prefix, lo left out."""
    out = run(["ip", "-n", ns, "-o", "-4", "addr", "show"], check=False).stdout
    result: dict[str, list[str]] = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[1] != "lo":
            result.setdefault(fields[1], []).append(fields[3])
    return result


def peer_namespaces(ns: str) -> list[str]:
    """Names of the namespaces that links of `ns` point into (`ip netns list-id`), e.g. the
    network namespaces podman made for this host's containers."""
    out = run(["ip", "-n", ns, "netns", "list-id"], check=False).stdout
    names = []
    for line in out.splitlines():
        if "iproute2 netns name:" in line:
            names.append(line.split("iproute2 netns name:")[1].strip(" )"))
    return names


def iptables(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return ns_exec(ns, "iptables", "-w", *args, check=check)


def inode(path: Path | str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)
