"""Joining through the edge.

A new machine behind NAT cannot reach the cluster's API (every machine is behind some NAT),
but the edge can: it is a WireGuard peer of every registered machine. So the edge passes
`POST <prefix>/v1/join` as it is to `http://<mesh ip>:7180/v1/join` of the registered
machines, one after another until one answers, and hands the answer back. The join token in
the body is checked by the cluster, not here; the edge never sees a secret it could keep.
"""

from __future__ import annotations

import json
import logging
import random
import urllib.error
import urllib.request

from mesh.registry import Registration

API_PORT = 7180  # the control plane's API on every machine (vcapp/node/config.py API_PORT)
# A live API answers a join in milliseconds; a machine that is down must not hold the joiner
# for long before the next one is tried.
FORWARD_TIMEOUT = 5.0

log = logging.getLogger("mesh.joinproxy")


def forward(machines: list[Registration], body: bytes) -> tuple[int, bytes]:
    """(HTTP status, body) of the first machine that answers the join."""
    order = list(machines)
    random.shuffle(order)  # spread joins; any machine can admit
    for reg in order:
        url = f"http://{reg.mesh_ip}:{API_PORT}/v1/join"
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=FORWARD_TIMEOUT) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:  # the cluster answered: a refusal is an answer too
            return e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            log.info("join via %s (%s) failed: %s", reg.node, reg.mesh_ip, e)
    return 503, json.dumps({"error": "no cluster machine answered through the edge: is any machine of "
                                     "the cluster up and connected to this edge?"}).encode()
