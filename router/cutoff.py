"""Cutting the open connections to a machine that left the cluster's live set.

A request already sent to a machine that dies gets no answer and no reset: packets to it
vanish (powered off, black-holed, its mesh peer gone), so the proxy waits for the answer
until its response timeout (a minute) while the client gives up. Once the cluster has seen
the death (a confirmed suspect or an expired lease: the machine leaves the routes), the edge
and every node router abort their connections to that machine's router ports (`ss -K`, the
kernel's socket destroy). Caddy then sees the round trip fail and retries an idempotent
request (caddyjson.RETRY_METHODS) on another upstream at once. New connections are not
refused: a machine that was only cut off is routed to again when it returns.
"""

from __future__ import annotations

import ipaddress
import logging
import subprocess

log = logging.getLogger("router.cutoff")

TIMEOUT = 5.0  # ss answers in milliseconds


def abort_argv(addr: str, ports: tuple[int, ...]) -> list[str]:
    """`ss` arguments destroying this host's TCP connections to `addr` on `ports` (pure)."""
    ip = str(ipaddress.ip_address(addr))  # ValueError on anything but an address
    if not ports:
        raise ValueError("name the ports whose connections to cut")
    selector = [tok for p in ports for tok in ("or", "dport", "=", f":{int(p)}")][1:]
    return ["ss", "-K", "-t", "dst", ip, "(", *selector, ")"]


def only_in(first: list[str] | tuple[str, ...], second: list[str] | tuple[str, ...]) -> list[str]:
    """Host parts of the addresses ("ip" or "ip:port") in `first` and not in `second` (pure)."""
    hosts = lambda addrs: {a.rsplit(":", 1)[0] if a.count(":") == 1 else a for a in addrs}  # noqa: E731
    return sorted(hosts(first) - hosts(second))


def abort(addr: str, ports: tuple[int, ...]) -> bool:
    """Destroy this host's connections to `addr` on `ports`; False (logged) when ss fails."""
    try:
        out = subprocess.run(abort_argv(addr, ports), capture_output=True, text=True, timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired, ValueError) as e:
        log.warning("could not cut the connections to %s: %s", addr, e)
        return False
    if out.returncode != 0:
        log.warning("could not cut the connections to %s: %s", addr, (out.stderr or out.stdout).strip()[-300:])
        return False
    cut = max(0, len(out.stdout.strip().splitlines()) - 1)  # ss lists what it destroyed under a header
    if cut:
        log.info("cut %d open connection(s) to %s, which left the cluster's routes", cut, addr)
    return True
