"""A node router's access log: what `vcapp logs` shows of the requests it served.

Caddy writes one JSON object a request to the file (node_config.access_logging), already
stripped of headers and of the access-token query parameter by its filter encoder:
    {"ts": 1764720000.12, "logger": "http.log.access.node",
     "request": {"client_ip": "203.0.113.9", "method": "GET", "host": "blog.example.com", "uri": "/"},
     "status": 200, "duration": 0.0031, "size": 193, "upstream": "127.0.0.1:40123"}
`logger` ends with the server that took it: "node" (from an edge or a client) or "hop" (from
another machine's router, which logged it too). `upstream` is where it went: one of this
machine's instances (loopback), or another machine's hop server; Caddy logs it by the name its
answers gave (router/answers.py target), read back as the address.

`parse` and `shown` are pure; `read` reads the file as `podman logs` reads a container's:
the last lines, lines since a time, and following as Caddy appends (also across a roll).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from router.answers import dial_address

FOLLOW_POLL_S = 0.25
# The proxy's own failures to reach an upstream: the hop never logged these requests.
PROXY_ERRORS = (502, 504)


@dataclass(frozen=True)
class Access:
    ts: float
    server: str  # "node" or "hop"
    host: str
    method: str
    path: str
    status: int
    seconds: float
    size: int
    client: str
    upstream: str

    @property
    def local(self) -> bool:
        """Served by an instance on this machine (its loopback), not sent on to another router."""
        return self.upstream.startswith("127.0.0.1:")


def parse(line: str) -> Access | None:
    """The request of one access log line; None for anything else."""
    try:
        doc = json.loads(line)
        req = doc["request"]
        return Access(ts=float(doc["ts"]), server=str(doc.get("logger", "")).rpartition(".")[2],
                      host=str(req.get("host", "")).rsplit(":", 1)[0].lower(), method=str(req.get("method", "")),
                      path=str(req.get("uri", "")), status=int(doc.get("status") or 0),
                      seconds=float(doc.get("duration") or 0), size=int(doc.get("size") or 0),
                      client=str(req.get("client_ip") or req.get("remote_ip") or ""),
                      upstream=dial_address(str(doc.get("upstream") or "")))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def shown(entry: Access, hosts: set[str], since: float | None = None) -> bool:
    """A line of an app's log: for one of its hosts, not before `since`, and not a request
    this router only passed on to another machine's router (that router logs it, with the
    instance; unless passing it on failed)."""
    if entry.host not in hosts or (since is not None and entry.ts < since):
        return False
    return entry.server == "hop" or entry.local or not entry.upstream or entry.status in PROXY_ERRORS


def format_line(entry: Access, instance: Callable[[str], str]) -> str:
    """Heroku's router line, in its key=value form; `instance(upstream)` names the instance."""
    where = f"instance={instance(entry.upstream)}" if entry.local else \
        f"via={entry.upstream}" if entry.upstream else "instance=none"
    return (f'method={entry.method} path="{entry.path}" status={entry.status} '
            f"service={entry.seconds * 1000:.0f}ms bytes={entry.size} fwd=\"{entry.client}\" {where}")


def read(path: Path, hosts: set[str], since: float | None = None, tail: int | None = None,
         follow: bool = False, stopped: Callable[[], bool] = lambda: False) -> Iterator[Access]:
    """The app's requests in the file: all (or the last `tail`) since `since`, then, when
    following, each new one as Caddy writes it until `stopped()`. A missing file is an empty log."""
    handle, inode = _open(path)
    try:
        kept: list[Access] = []
        partial = b""
        if handle is not None:
            for raw in handle:
                if not raw.endswith(b"\n"):
                    partial = raw  # Caddy is still writing it
                    break
                entry = parse(raw.decode(errors="replace"))
                if entry and shown(entry, hosts, since):
                    kept.append(entry)
        yield from (kept[-tail:] if tail else kept)
        while follow and not stopped():
            raw = handle.readline() if handle is not None else b""
            if raw:
                partial += raw
                if partial.endswith(b"\n"):
                    entry = parse(partial.decode(errors="replace"))
                    partial = b""
                    if entry and shown(entry, hosts, since):
                        yield entry
                continue
            time.sleep(FOLLOW_POLL_S)
            if _rolled(path, inode):  # Caddy rolled the file: the new one from its start
                if handle is not None:
                    handle.close()
                handle, inode = _open(path)
                partial = b""
    finally:
        if handle is not None:
            handle.close()


def _open(path: Path):
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return None, None
    return handle, os.fstat(handle.fileno()).st_ino


def _rolled(path: Path, inode: int | None) -> bool:
    try:
        return os.stat(path).st_ino != inode
    except FileNotFoundError:
        return False
