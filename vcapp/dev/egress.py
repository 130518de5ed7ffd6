"""The simulated internet's one way out: an allow-listed forward HTTP(S) proxy on the host.

    host's namespace                        vc-<cluster>-net (the backbone)
    tinyproxy on 198.51.100.<4s+1>:8888 ── vx<cluster> ══ px ── 198.51.100.<4s+2>/30
      (connects only to ALLOWED names,                   │  forwards only TCP to the proxy,
       through the host's own proxy if it has one)       │  source-NATed to 198.51.100.<4s+2>
                                                        bb0 203.0.113.1/24
    each site router: route 198.51.100.<4s+1>/32 via 203.0.113.1 (its LAN reaches it through NAT)

The host forwards nothing for the namespaces and learns no route into them: the backbone
answers from the link's own /30, and only the proxy process listens on the host's end. No
namespace gets a default route; the one extra route is to the proxy's address alone. Every
cluster takes its own /30 `slot` (64 in the documentation range 198.51.100.0/24), so
clusters side by side each have their own proxy.

Builds reach it through HTTP_PROXY/HTTPS_PROXY (the cluster setting `build.proxy`, set by
`vcapp dev up`); tinyproxy answers any other destination with 403 and ERROR_PAGE.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from vcapp.pidfile import live_pid

LINK_RANGE = ipaddress.IPv4Network("198.51.100.0/24")
SLOTS = LINK_RANGE.num_addresses // 4
PROXY_PORT = 8888
BACKBONE_GATEWAY = "203.0.113.1"
BACKBONE_LINK = "px"  # the backbone's end of the proxy link
TINYPROXY = "/usr/bin/tinyproxy"
# The registries a build fetches from: PyPI and its file host, Debian (packages and security
# updates, plain HTTP), npm, the Go module proxy and checksum database, and the public
# container registries a Dockerfile's FROM resolves to (Docker Hub's API, token service and
# blob CDN; GitHub's and Quay's). A mirror an admin adds with `vcapp registries add` on the
# simulated internet is on the backbone itself and needs no proxy.
PACKAGE_REGISTRIES = ("pypi.org", "files.pythonhosted.org", "deb.debian.org", "security.debian.org",
                      "registry.npmjs.org", "proxy.golang.org", "sum.golang.org")
IMAGE_REGISTRIES = ("registry-1.docker.io", "auth.docker.io", "production.cloudflare.docker.com",
                    "ghcr.io", "pkg-containers.githubusercontent.com", "quay.io", "cdn01.quay.io",
                    "cdn02.quay.io", "cdn03.quay.io")
ALLOWED = PACKAGE_REGISTRIES + IMAGE_REGISTRIES
CONNECT_PORTS = (443,)
START_WAIT = 5.0  # s: tinyproxy binds its port within milliseconds; seconds mean it failed
# Host proxy variables a chained upstream is read from, most specific first.
HOST_PROXY_VARS = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY")

ERROR_PAGE = """\
vcapp dev proxy: {cause} ({request}).
The simulated cluster reaches only package and image registries through this proxy: {allowed}.
{detail}
"""


class EgressError(RuntimeError):
    """The proxy could not be set up; the message says what to do."""


@dataclass(frozen=True)
class Link:
    """The addresses of one cluster's proxy link (slot s of LINK_RANGE)."""

    slot: int

    def _addr(self, offset: int) -> str:
        return str(LINK_RANGE.network_address + 4 * self.slot + offset)

    @property
    def proxy_addr(self) -> str:
        return self._addr(1)

    @property
    def backbone_addr(self) -> str:
        return self._addr(2)

    @property
    def url(self) -> str:
        return f"http://{self.proxy_addr}:{PROXY_PORT}"


def host_link(cluster: str) -> str:
    """The host's end of the link: vx<cluster> (at most 14 bytes; Linux allows 15)."""
    return f"vx{cluster}"


def free_slot(cluster: str, used: set[str]) -> int:
    """A slot whose proxy address the host does not have yet, starting from one derived from
    the cluster name (stable for `dev`); `used` are the host's IPv4 addresses."""
    start = sum(cluster.encode()) % SLOTS
    for i in range(SLOTS):
        slot = (start + i) % SLOTS
        if Link(slot).proxy_addr not in used:
            return slot
    raise EgressError(f"all {SLOTS} proxy links of {LINK_RANGE} are taken: remove clusters with `vcapp dev down`")


def upstream(environ: dict[str, str]) -> str | None:
    """host:port of the proxy this host itself goes out through, from its environment."""
    for name in HOST_PROXY_VARS:
        value = environ.get(name, "").strip()
        if value:
            parts = urlsplit(value if "://" in value else f"http://{value}")
            if parts.hostname and parts.port:
                return f"{parts.hostname}:{parts.port}"
            if parts.hostname:
                return f"{parts.hostname}:{443 if parts.scheme == 'https' else 80}"
    return None


def filter_rules(allowed: tuple[str, ...]) -> str:
    """tinyproxy filter file (ERE): each allowed host name exactly, nothing else."""
    return "".join(f"^{re.escape(name)}$\n" for name in allowed)


def config(link: Link, allowed: tuple[str, ...], directory: Path, upstream_proxy: str | None) -> str:
    """tinyproxy.conf of one cluster's proxy: listens on the link's host end only, serves only
    the two ends of the link, connects only to `allowed` (CONNECT only to CONNECT_PORTS)."""
    lines = [
        "User nobody",
        "Group nogroup",
        f"Listen {link.proxy_addr}",
        f"Port {PROXY_PORT}",
        "Timeout 600",
        f"Allow {link.backbone_addr}",
        # The host itself: a stack made for a simulated machine's build is debootstrapped by
        # the calling process, on the host, through this proxy like the build's own steps.
        f"Allow {link.proxy_addr}",
        f'Filter "{directory / "allow.filter"}"',
        "FilterType ere",
        "FilterDefaultDeny Yes",
        f'ErrorFile 403 "{directory / "refused.txt"}"',
        f'DefaultErrorFile "{directory / "refused.txt"}"',
        f'LogFile "{directory / "tinyproxy.log"}"',
        "LogLevel Connect",
        f'PidFile "{directory / "tinyproxy.pid"}"',
        "MaxClients 100",
        'ViaProxyName "vcapp-dev"',
        *(f"ConnectPort {port}" for port in CONNECT_PORTS),
    ]
    if upstream_proxy:
        lines.append(f"Upstream http {upstream_proxy}")
    return "\n".join(lines) + "\n"


# ---- acting on the host ------------------------------------------------------------------

def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EgressError(f"{' '.join(cmd)}: {proc.stderr.strip() or proc.stdout.strip()}")


def host_addresses() -> set[str]:
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    return {line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) >= 4}


def wire(cluster: str, backbone_ns: str, routers_ns: list[str], slot: int) -> Link:
    """Create the link (host end vx<cluster>, backbone end px), the backbone's forwarding and
    the routers' one route. Safe to run again."""
    from vcapp.dev import netns  # the plumbing helpers; netns itself knows nothing of the proxy

    link, host_end = Link(slot), host_link(cluster)
    if not netns.has_link(backbone_ns, BACKBONE_LINK):
        _run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", BACKBONE_LINK, "netns", backbone_ns])
    _run(["ip", "addr", "replace", f"{link.proxy_addr}/30", "dev", host_end])
    _run(["ip", "link", "set", host_end, "up"])
    netns.run(["ip", "-n", backbone_ns, "addr", "replace", f"{link.backbone_addr}/30", "dev", BACKBONE_LINK])
    netns.set_up(backbone_ns, BACKBONE_LINK)
    netns.run(["ip", "-n", backbone_ns, "addr", "replace", f"{BACKBONE_GATEWAY}/24", "dev", "bb0"])
    netns.sysctl(backbone_ns, "net.ipv4.ip_forward", "1")
    for table, chain in (("nat", "POSTROUTING"), ("filter", "FORWARD")):
        netns.iptables(backbone_ns, "-t", table, "-F", chain)
    netns.iptables(backbone_ns, "-P", "FORWARD", "DROP")
    netns.iptables(backbone_ns, "-A", "FORWARD", "-i", "bb0", "-o", "bb0", "-j", "ACCEPT")
    netns.iptables(backbone_ns, "-A", "FORWARD", "-i", "bb0", "-o", BACKBONE_LINK, "-d", link.proxy_addr,
                   "-p", "tcp", "--dport", str(PROXY_PORT), "-j", "ACCEPT")
    netns.iptables(backbone_ns, "-A", "FORWARD", "-i", BACKBONE_LINK, "-o", "bb0", "-m", "conntrack",
                   "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
    netns.iptables(backbone_ns, "-t", "nat", "-A", "POSTROUTING", "-o", BACKBONE_LINK, "-j", "SNAT",
                   "--to-source", link.backbone_addr)
    for ns in routers_ns:
        netns.run(["ip", "-n", ns, "route", "replace", f"{link.proxy_addr}/32", "via", BACKBONE_GATEWAY])
    return link


def proxy_pid(directory: Path) -> int | None:
    """The pid of the tinyproxy running with the config under `directory`, None if none runs."""
    return live_pid(directory / "tinyproxy.pid", "tinyproxy", str(directory))


def start(link: Link, directory: Path, allowed: tuple[str, ...] = ALLOWED,
          environ: dict[str, str] | None = None) -> None:
    """Write the proxy's files under `directory` and start tinyproxy unless it runs already."""
    if proxy_pid(directory):
        return
    if not Path(TINYPROXY).exists():
        raise EgressError(f"{TINYPROXY} is missing: install Debian's tinyproxy (scripts/install does)")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "allow.filter").write_text(filter_rules(allowed))
    (directory / "refused.txt").write_text(ERROR_PAGE.replace("{allowed}", ", ".join(allowed)))
    conf = directory / "tinyproxy.conf"
    conf.write_text(config(link, allowed, directory, upstream(dict(environ if environ is not None else os.environ))))
    for name in ("tinyproxy.log", "tinyproxy.pid"):  # written after tinyproxy drops to nobody
        (directory / name).touch()
        os.chown(directory / name, 65534, 65534)
    log = open(directory / "tinyproxy.out", "ab")
    with log:
        subprocess.Popen([TINYPROXY, "-d", "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=log,
                         stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        if proxy_pid(directory) and _listening(link):
            return
        time.sleep(0.1)
    tail = (directory / "tinyproxy.out").read_text(errors="replace")[-400:]
    raise EgressError(f"tinyproxy did not start on {link.url}: {tail or 'no output'}")


def _listening(link: Link) -> bool:
    out = subprocess.run(["ss", "-Hltn", f"src {link.proxy_addr}:{PROXY_PORT}"], capture_output=True, text=True)
    return bool(out.stdout.strip())


def stop(directory: Path) -> None:
    """Stop this cluster's tinyproxy (the one started with the config under `directory`)."""
    pid = proxy_pid(directory)
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not proxy_pid(directory):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
