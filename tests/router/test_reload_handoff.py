"""A Caddy reload hands the connections queued on its old listeners to the new ones.

Caddy binds each config's listeners anew beside the old ones (SO_REUSEPORT) and closes the old
ones after a load; a connection queued on a closed one is reset unless the kernel migrates it.
The daemons switch that on for their network namespace (router/caddy.py)."""

import subprocess
import sys
from pathlib import Path

from router.caddy import MIGRATE_REQ, hand_over_accept_queues


def test_the_switch_is_set_in_the_namespace_of_the_caller_only():
    host_before = MIGRATE_REQ.read_text()
    code = ("from router.caddy import MIGRATE_REQ, hand_over_accept_queues;"
            "before = MIGRATE_REQ.read_text().strip();"
            "ok = hand_over_accept_queues();"
            "print(before, ok, MIGRATE_REQ.read_text().strip())")
    out = subprocess.run(["unshare", "--net", sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2]).stdout.split()
    assert out == ["0", "True", "1"], out
    assert MIGRATE_REQ.read_text() == host_before, "the host's own namespace changed"


def test_a_kernel_without_the_switch_is_reported_not_raised(tmp_path, caplog):
    assert hand_over_accept_queues(tmp_path / "absent" / "tcp_migrate_req") is False
    assert "may reset connections" in caplog.text
