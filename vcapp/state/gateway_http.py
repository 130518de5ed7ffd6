"""The HTTP session etcd3gw's client posts through: one urllib3 connection pool to one etcd
member, without requests on top.

A request through requests.Session costs ~1.1 ms of this process's CPU (1.5 ms with its
environment lookups: proxies, .netrc); the same POST through urllib3 costs ~0.5 ms
(bench/etcd_client_bench.py). An idle machine's daemon sends several a second (lease renewals,
each tick's read), and on a machine with a busy API many more.

It is what Etcd3Client uses of a session: `post(url, json=..., timeout=...)` answering with
`status_code`, `reason`, `text` and `json()`, and a `headers` dict sent with every request
(the etcd auth token). Failures are raised as requests' exceptions, which Etcd3Client maps to
its own (a timeout, a connection that failed). Thread-safe: the pool hands each thread a
connection of its own.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError, TimeoutError

POOL_SIZE = 4  # connections kept per member; more are made when threads post at once, then closed
# Without an Accept header, etcd 3.4's gateway answers a request that carries no token
# "permission denied" where it otherwise says "user name is empty", the answer the Store
# logs in on (vcapp/state/etcdauth.py NEEDS_LOGIN).
HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


class Answer:
    def __init__(self, status: int, reason: str | None, body: bytes):
        self.status_code, self.reason, self.content = status, reason or "", body

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class GatewaySession:
    def __init__(self, url: str, ca: str | None = None, cert: tuple[str, str] | None = None):
        """`url`: the member's base URL (http or https); `ca`, `cert` (certificate, key): what
        an https one is reached with (an http one needs neither)."""
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        self.headers: dict[str, str] = {}
        if parts.scheme == "https":
            self.pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
                host, port, maxsize=POOL_SIZE, block=False, retries=False, cert_reqs="CERT_REQUIRED", ca_certs=ca,
                cert_file=cert[0] if cert else None, key_file=cert[1] if cert else None)
        else:
            self.pool = urllib3.HTTPConnectionPool(host, port, maxsize=POOL_SIZE, block=False, retries=False)

    def post(self, url: str, json: Any = None, timeout: float | None = None) -> Answer:
        path = urlsplit(url)
        target = path.path + (f"?{path.query}" if path.query else "")
        body = _dumps(json)
        try:
            r = self.pool.urlopen("POST", target, body=body, headers={**self.headers, **HEADERS},
                                  timeout=urllib3.Timeout(connect=timeout, read=timeout), preload_content=True,
                                  redirect=False)
        except NewConnectionError as e:  # refused, no route (urllib3 makes it a kind of timeout)
            raise requests.exceptions.ConnectionError(str(e)) from None
        except TimeoutError as e:
            raise requests.exceptions.Timeout(str(e)) from None
        except (HTTPError, OSError) as e:  # reset, TLS refused, a connection dropped mid-answer
            raise requests.exceptions.ConnectionError(str(e)) from None
        return Answer(r.status, r.reason, r.data)

    def close(self) -> None:
        self.pool.close()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
