"""Run a bench's measuring part in a network namespace of its own: loopback only, so its
servers take any port and nothing reaches the host's network.

    rows = run_inside([sys.executable, __file__, "--inside", ...], migrate=True)

`migrate`: the kernel hands a closed listener's queued connections to another listener on the
same port, as the daemons set it in their namespaces (router/caddy.py hand_over_accept_queues).
The command prints its result as JSON on its last line of output; that is returned.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_inside(argv: list[str], migrate: bool) -> object:
    script = f"ip link set lo up && sysctl -qw net.ipv4.tcp_migrate_req={int(migrate)} && {shlex.join(argv)}"
    done = subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise SystemExit(f"the run in a namespace failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
