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
import time
from typing import Callable, TypeVar

log = logging.getLogger("router.cutoff")

TIMEOUT = 5.0  # ss answers in milliseconds
# Caddy drops the retries of requests still in flight under a config it replaces (the old
# config's context ends with the load, and a retry first waits caddyjson.TRY_INTERVAL on it):
# a GET in flight to a machine that died came back 502 when the cut followed the load. The
# load waits this long after the cut, so those requests are retried under the running config.
RETRIES_SETTLE_S = 0.3

T = TypeVar("T")


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


def around_load(addrs: list[str], ports: tuple[int, ...], load: Callable[[], T]) -> T:
    """Load a config that drops the machines at `addrs`: their connections on `ports` are cut
    first and the requests in flight to them retried under the running config, then `load`
    runs, then they are cut again (connections begun meanwhile)."""
    for addr in addrs:
        abort(addr, ports)
    if addrs:
        time.sleep(RETRIES_SETTLE_S)
    try:
        return load()
    finally:
        for addr in addrs:
            abort(addr, ports)
