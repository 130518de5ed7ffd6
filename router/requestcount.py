"""Requests and server errors per hostname, from a Caddy's own Prometheus metrics (pure).

Caddy (with `metrics: {per_host: true}` in its http app) counts every request per handler:
    caddy_http_request_duration_seconds_count{code="200",handler="reverse_proxy",host="blog.apps.test",...} 41
A request that passes a token check goes through two handlers (forward_auth is a
reverse_proxy too) and is counted by both with the same final code, so per host and code
the count is the largest over handlers, not their sum (other labels: summed). Errors are 5xx answers.
Servers named in `exclude` are left out: a request another router hopped here was counted
where it came in.
"""

from __future__ import annotations

import re

LINE = re.compile(r'^caddy_http_request_duration_seconds_count\{(?P<labels>[^}]*)\}\s+(?P<value>[0-9.e+]+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text: str, exclude: tuple[str, ...] = ()) -> dict[str, dict[str, int]]:
    """{host: {"requests": n, "errors": n}} (cumulative since Caddy started)."""
    by_code: dict[tuple, float] = {}
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if not m:
            continue
        labels = dict(LABEL.findall(m.group("labels")))
        if labels.get("server") in exclude:
            continue
        labels.pop("handler", None)  # the same request, seen by each handler it passed
        key = tuple(sorted(labels.items()))
        by_code[key] = max(by_code.get(key, 0.0), float(m.group("value")))
    out: dict[str, dict[str, int]] = {}
    for key, count in by_code.items():
        host, code = dict(key).get("host", ""), dict(key).get("code", "")
        if not host or host == "_other":
            continue
        row = out.setdefault(host, {"requests": 0, "errors": 0})
        row["requests"] += int(count)
        if code.startswith("5"):
            row["errors"] += int(count)
    return out
