"""A machine lost while the storage is still copying a returned machine's data: the volume app
writes again within seconds, it does not wait for the copies.

When a machine comes back, the controller raises the copy count of the app data rules at once
(every new write needs all three copies) and then copies what was written while it was away
(`volume.fix.replication`, under SeaweedFS's cluster-wide admin lock: minutes for a lot of
data, or longer while another admin holds the lock). Lowering the rules again when another
machine dies must not wait for those copies: until it is done, no write can land. In the soak
(bench/soak.py), a machine killed ten seconds after its predecessor came back left the volume
app unable to write for the rest of the heal: 40-60 s.

Here the heal is held for certain: the test holds the admin lock itself, as another admin
would, before the machine returns."""

from __future__ import annotations

import os
import signal
import time

import pytest

from builder.baseimage import TINY_IMAGE
from storage import replication, volumes
from storage.host import weed_binary
from storage.plan import FILER_PORT, MASTER_PORT
from tests.control.conftest import three_machines
from tests.storage.test_partition_cluster import master_leader
from tests.storage.test_volumes_cluster import PAGE_WAIT_S, healthy, storage_state, vcapp_json

pytestmark = pytest.mark.cluster

SERVE = "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"
# One durable append: dd fsyncs the descriptor it wrote with (docs/volumes.md, "Durable writes").
APPEND = "echo {n} | dd of=/data/journal oflag=append conv=notrunc,fsync 2>/dev/null"
APPEND_TIMEOUT = 15
# Detection (~5 s), setting the rules (one weed shell, ~2 s), a write assigned before that
# failing over; generous for a loaded CI machine. Waiting for the held heal instead takes the
# weed shell's whole timeout (storage/shell.py SHELL_TIMEOUT, 120 s) and the retry after it.
WRITES_AGAIN_WITHIN_S = 60
RULES_WAIT_S = 60
HEAL_WAIT_S = 240


@pytest.fixture(scope="module")
def cc(make_sim, tmp_path_factory):
    return three_machines(make_sim, tmp_path_factory)


def append(cc, row: dict, n: int) -> bool:
    proc = cc.sim.run(row["node"], "timeout", str(APPEND_TIMEOUT), "podman", "exec", row["container"],
                      "sh", "-c", APPEND.format(n=n), check=False, timeout=APPEND_TIMEOUT + 10)
    return proc.returncode == 0


def shell_argv(cc, on: str) -> list[str]:
    masters = ",".join(f"{cc.sim.addr(m)}:{MASTER_PORT}" for m in cc.machines)
    return [weed_binary(), "shell", f"-master={masters}", f"-filer={cc.sim.addr(on)}:{FILER_PORT}"]


def journal_code(cc, on: str) -> str | None:
    """The copy code of the journal volume's rule, as the filers hold it now."""
    out = cc.sim.run(on, *shell_argv(cc, on), input="fs.configure\n", check=False, timeout=30).stdout
    try:
        rules = volumes.parse_rules(out)
    except ValueError:
        return None
    return next((r.get("replication") for r in rules if r.get("locationPrefix") == "/volumes/journal/data/"), None)


def test_a_machine_lost_while_copies_are_being_made_does_not_stop_the_writes(cc, tmp_path):
    cc.vcapp("home-1", "apps", "create", "journal", "--image", TINY_IMAGE, "--port", "8080", "--command", SERVE,
             "--health-path", "/index.html", "--memory", "64M", "--volume", "data:/data:64M")
    cc.vcapp("home-1", "volumes", "create", "journal", "data", "--size", "64M")
    row = cc.wait(lambda: healthy(cc, "journal", "home-1"), PAGE_WAIT_S, "journal healthy", interval=1)[0]
    owner = row["node"]
    assert append(cc, row, 1)
    leader = cc.wait(lambda: master_leader(cc), 60, "a storage master leader", interval=1)
    victim = next(m for m in cc.machines if m not in (owner, leader))
    full = replication.choose_code(["home"] * 3)

    # Away: new writes land on volumes with two copies, which its return must copy again.
    cc.sim.dc.kill(victim)
    cc.wait(lambda: storage_state(cc, owner) == "degraded", 60, "storage degraded", interval=1)
    cc.wait(lambda: append(cc, row, 2), 60, "a write while degraded", interval=1)

    holder = cc.sim.spawn(owner, "sh", "-c", f"(echo lock; sleep 900) | {' '.join(shell_argv(cc, owner))}",
                          log=tmp_path / "lock-holder.log")
    try:
        time.sleep(3)  # the lock is granted in milliseconds; the heal below now waits for it
        assert holder.poll() is None, (tmp_path / "lock-holder.log").read_text()
        cc.sim.dc.revive(victim)
        cc.wait(lambda: journal_code(cc, owner) == full, RULES_WAIT_S, "the rules raised to three copies", interval=2)
        storage = vcapp_json(cc, owner, "volumes", "list")["storage"]
        assert storage["state"] == "degraded", "the heal finished while another admin held the lock"
        assert storage["code"] == full, storage  # what a moved instance waits on (volumes.wait_writable)

        cc.sim.dc.kill(victim)
        lost = time.monotonic()
        cc.wait(lambda: append(cc, row, 3), WRITES_AGAIN_WITHIN_S, "a durable write after the second machine loss",
                interval=1)
        print(f"\nwrites again {time.monotonic() - lost:.1f}s after {victim} was lost during a held heal")
        assert journal_code(cc, owner) != full
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    cc.sim.dc.revive(victim)
    cc.wait(lambda: storage_state(cc, owner) == "healthy", HEAL_WAIT_S, "storage healthy once the lock is free",
            interval=2)
    data = cc.sim.run(owner, "podman", "exec", row["container"], "cat", "/data/journal").stdout.split()
    assert data[:1] == ["1"] and "2" in data and data[-1] == "3", data
