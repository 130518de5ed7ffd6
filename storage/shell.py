"""`weed shell` driven from Python: run admin commands against the storage cluster.

Commands go on stdin; `weed shell` exits non-zero when a command fails, and its output is
returned for the caller to parse. The shell also takes SeaweedFS's cluster-wide admin lock
(`lock`/`unlock`) around commands that move volumes, as its docs require.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

from storage.host import Host, StorageError, StorageUnreachable
from storage.plan import FILER_PORT, MASTER_PORT, ClusterPlan, Machine

SHELL_TIMEOUT = 120.0  # volume.fix.replication copies whole volumes (up to 1 GB each)
# A master that answers at all answers /cluster/status in milliseconds. Probing first matters:
# `weed shell` dials its masters in order, and a dial to a powered-off machine whose ARP
# entry is still cached hangs ~20 s, which was most of the time a failover took.
MASTER_PROBE_TIMEOUT = 1.0
# After the lead master's machine is lost, the others name it leader until they elect another
# (plan.MASTER_ELECTION_TIMEOUT, then a vote): a shell started meanwhile follows them to it and
# waits out a dial to a machine that does not answer. Setting the copy count after a black hole
# took 10-20 s that way (bench/soak.py), and no write of a volume lands until it is set.
LEADER_WAIT_S = 10.0
LEADER_POLL_S = 0.3
# gRPC's status when a dial failed or a connection broke (a filer or master restarting):
# whether the command ran is unknown, so only idempotent callers ask again.
UNREACHABLE = "code = Unavailable"
MUTATING = ("volume.fix.replication", "volume.configure.replication", "volume.delete", "volume.balance",
            "collection.delete", "volumeServer.evacuate")


def run(plan: ClusterPlan, host: Host, commands: list[str], weed: str, timeout: float = SHELL_TIMEOUT) -> str:
    """Run shell commands from `host` (talking to its local filer). Returns stdout."""
    me = plan.machine(host.name)
    if any(c.split()[0] in MUTATING for c in commands):
        commands = ["lock", *commands, "unlock"]
    masters = ",".join(live_masters(plan, host)) or plan.master_list
    argv = [weed, "shell", f"-master={masters}", f"-filer={me.addr}:{FILER_PORT}"]
    out = host.run(argv, input="\n".join(commands) + "\n", timeout=timeout)
    if out.returncode != 0 or _failed(out.stdout + out.stderr):
        error = StorageUnreachable if UNREACHABLE in out.stdout + out.stderr else StorageError
        raise error(
            f"weed shell on {host.name} failed ({'; '.join(commands)}): {(out.stderr or out.stdout).strip()[-600:]}"
            " — check that the masters and this machine's filer run (storage agent logs)"
        )
    return out.stdout


def live_masters(plan: ClusterPlan, host: Host, wait: float = LEADER_WAIT_S) -> list[str]:
    """Masters that answer from `host`, the Raft leader first (empty if none answers). While
    the answering masters name no leader, or one that does not answer, asks again for up to
    `wait` s: a shell started then follows them to that leader and waits out the dial."""
    deadline = time.monotonic() + wait
    while True:
        with ThreadPoolExecutor(max_workers=len(plan.masters) or 1) as pool:
            answers = dict(zip(plan.masters, pool.map(lambda m: cluster_status(host, m), plan.masters)))
        masters, leader_answers = order_masters({f"{m.addr}:{MASTER_PORT}": a for m, a in answers.items()})
        if leader_answers or not masters or time.monotonic() + LEADER_POLL_S > deadline:
            return masters
        time.sleep(LEADER_POLL_S)


def order_masters(answers: dict[str, dict | None]) -> tuple[list[str], bool]:
    """From each master's /cluster/status (None: no answer): the masters that answered, the
    leader they name first, and whether that leader is among them."""
    answering = [addr for addr, a in answers.items() if a is not None]
    leaders = {_http_address(a.get("Leader") or "") for a in answers.values() if a}
    leaders |= {addr for addr, a in answers.items() if a and a.get("IsLeader")}
    leader = next((addr for addr in answering if addr in leaders), None)
    if leader is None:
        return answering, False
    return [leader, *(a for a in answering if a != leader)], True


def _http_address(name: str) -> str:
    """A master as the shell dials it, from the name Raft gives it: "<host>:<http>.<grpc>"."""
    head, _, grpc_port = name.rpartition(".")
    return head if ":" in head and grpc_port.isdigit() else name


def cluster_status(host: Host, master: Machine, timeout: float = MASTER_PROBE_TIMEOUT) -> dict | None:
    """A master's /cluster/status answer as seen from `host` ({} when it is not JSON), or None
    when it does not answer within `timeout`."""
    out = host.run(["curl", "-sf", "--max-time", str(timeout), f"http://{master.addr}:{MASTER_PORT}/cluster/status"],
                   timeout=timeout + 5)
    if out.returncode != 0:
        return None
    try:
        answer = json.loads(out.stdout)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _failed(text: str) -> bool:
    return any(line.startswith("error:") or line.startswith("error ") for line in text.splitlines())


VOLUME_LINE = re.compile(
    r"volume Id:(?P<id>\d+), Size:(?P<size>\d+), ReplicaPlacement:(?P<rp>\d{3}), Collection:(?P<coll>[^,]*),"
    r".*?FileCount:(?P<files>\d+).*?ReadOnly:(?P<ro>\w+)"
)
NODE_LINE = re.compile(r"DataNode (?P<node>\S+) ")


def parse_volume_list(text: str) -> list[dict]:
    """volume.list output -> one dict per volume copy: id, collection, replication, node, read_only."""
    copies, node = [], None
    for line in text.splitlines():
        if m := NODE_LINE.search(line):
            node = m["node"]
        elif m := VOLUME_LINE.search(line):
            copies.append({
                "id": int(m["id"]), "collection": m["coll"], "replication": m["rp"], "node": node,
                "size": int(m["size"]), "files": int(m["files"]), "read_only": m["ro"] == "true",
            })
    return copies


def volume_copies(plan: ClusterPlan, host: Host, weed: str) -> list[dict]:
    return parse_volume_list(run(plan, host, ["volume.list"], weed))
