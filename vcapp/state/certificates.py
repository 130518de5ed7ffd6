"""The certificate of every name the edge serves, as the edge reports it (`vcapp domains`).

    /vc/edge/certificates   {"names": {host: {state, reason, not_after, since}}, "at": t}

The edge daemon works each status out (vcapp/edge/certificates.py) and sends the whole map
when it changes; only names the cluster serves are kept. Written by the API for the edge
(the edge host holds no etcd access), read by `GET /v1/domains`.
"""

from __future__ import annotations

import time

from vcapp.errors import BadRequest
from vcapp.state import keys
from vcapp.state.store import Store

# issued: valid now (reason: "renewing" or a failed renewal); pending: asking the CA;
# failed: the last attempt failed (reason: the CA's error); expired: no renewal succeeded;
# waiting: nobody visited the name over HTTPS yet (certificates come on demand).
STATES = ("issued", "pending", "failed", "expired", "waiting")
MAX_REASON = 400
MAX_NAMES = 1000  # 10 machines' apps and their custom domains, well within one request body


def _number(value: object, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 2**33:
        raise BadRequest(f"{what}: expected seconds since the epoch")
    return float(value)


def _reason(value: object) -> str:
    if not isinstance(value, str):
        raise BadRequest("reason: expected text")
    return "".join(c if c.isprintable() else " " for c in value)[:MAX_REASON]


def record(store: Store, report: object, served: set[str]) -> dict[str, dict]:
    """Keep an edge's report ({"certificates": {host: status}}), the served names only."""
    certs = report.get("certificates") if isinstance(report, dict) else None
    if not isinstance(certs, dict) or len(certs) > MAX_NAMES:
        raise BadRequest(f'expected {{"certificates": {{host: status}}}} with at most {MAX_NAMES} names')
    names = {}
    for host, status in certs.items():
        if host not in served:
            continue
        if not isinstance(status, dict) or status.get("state") not in STATES:
            raise BadRequest(f"{host}: state must be one of {', '.join(STATES)}")
        names[host] = {"state": status["state"], "reason": _reason(status.get("reason") or ""),
                       "not_after": _number(status.get("not_after"), f"{host}: not_after"),
                       "since": _number(status.get("since"), f"{host}: since")}
    store.put(keys.EDGE_CERTIFICATES, {"names": names, "at": time.time()})
    return names


def read(store: Store) -> tuple[dict[str, dict], float | None]:
    """({host: status}, when the edge last reported) — ({}, None) before any report."""
    value = store.value(keys.EDGE_CERTIFICATES) or {}
    names = value.get("names") if isinstance(value.get("names"), dict) else {}
    return names, value.get("at")
