"""Joining through the edge.

A new machine behind NAT cannot reach the cluster's API (every machine is behind some NAT),
but the edge can: it is a WireGuard peer of every registered machine. So the edge passes
`POST <prefix>/v1/join` as it is to `http://<mesh ip>:7180/v1/join` of the registered
machines, one after another until one answers, and hands the answer back. The join token in
the body is checked by the cluster, not here; the edge never sees a secret it could keep.
"""

from __future__ import annotations

import http.client
import json
import logging
import random

from mesh.registry import Registration

API_PORT = 7180  # the control plane's API on every machine (vcapp/machine.py API_PORT)
# A machine that is down (no answer on the mesh) must not hold the joiner for long before the
# next one is tried: the connect gets this long.
CONNECT_TIMEOUT = 3.0
# A join signs a certificate, seals its answer and writes etcd: well under a second on an
# idle machine, many seconds on a loaded one. Giving up earlier leaves a machine admitted
# whose answer nobody receives (the joiner's retry is answered again, membership.admit_node).
ANSWER_TIMEOUT = 30.0

log = logging.getLogger("mesh.joinproxy")


def forward(machines: list[Registration], body: bytes) -> tuple[int, bytes]:
    """(HTTP status, body) of the first machine that answers the join."""
    order = list(machines)
    random.shuffle(order)  # spread joins; any machine can admit
    for reg in order:
        conn = http.client.HTTPConnection(reg.mesh_ip, API_PORT, timeout=CONNECT_TIMEOUT)
        try:
            conn.connect()
            conn.sock.settimeout(ANSWER_TIMEOUT)
            conn.request("POST", "/v1/join", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.read()  # the cluster answered: a refusal is an answer too
        except (OSError, http.client.HTTPException) as e:
            log.info("join via %s (%s) failed: %s", reg.node, reg.mesh_ip, e or type(e).__name__)
        finally:
            conn.close()
    return 503, json.dumps({"error": "no cluster machine answered through the edge: is any machine of "
                                     "the cluster up and connected to this edge?"}).encode()
