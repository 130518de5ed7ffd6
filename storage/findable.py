"""Before an app reads its volume: every copy of the volume's data that a live machine holds
can be found through the masters.

A FUSE mount answers a directory listing as soon as its filer does, but reading a file needs
the master leader to know where the file's chunks live. Right after the master leader's
machine is lost, a new leader knows only the volume servers that have sent it a heartbeat
since it was elected; a read of a chunk whose servers have not fails with EIO. An app that
reads its data at start (a database opening its file, a notes app counting its records)
then starts with nothing, and keeps serving nothing: it does not know the read was early.

So the runtime waits, after mounting, until

    for every SeaweedFS volume id of the collection held by a live machine's volume server
    (GET <volume server>/status: Volumes[].Id, .Collection),
    a master answers GET /dir/lookup?volumeId=<id> with at least one location.

Volume servers that do not answer are not counted: a dead machine's copies are the ones
the others replace. A new, empty volume has no ids and passes at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from storage.host import Host, StorageError
from storage.plan import MASTER_PORT, VOLUME_PORT, ClusterPlan

FIND_TIMEOUT = 60.0  # a new master leader hears every live volume server within ~2 heartbeats (5 s each)
PROBE_TIMEOUT = 2.0  # a live SeaweedFS process answers in milliseconds
POLL = 0.5


def _get(host: Host, url: str) -> tuple[int, object]:
    """(HTTP status, parsed JSON body) of a GET from `host`; (0, None) when nothing answers."""
    out = host.run(["curl", "-s", "--max-time", str(PROBE_TIMEOUT), "-H", "Accept: application/json",
                    "-w", "\n%{http_code}", url], timeout=PROBE_TIMEOUT + 5)
    body, _, code = out.stdout.rpartition("\n")
    if out.returncode != 0 or not code.strip().isdigit():
        return 0, None
    try:
        return int(code), json.loads(body)
    except ValueError:
        return int(code), None


def held_ids(status: object, collection: str) -> set[int]:
    """The volume ids of `collection` in a volume server's /status answer."""
    infos = status.get("Volumes") if isinstance(status, dict) else None
    return {int(v["Id"]) for v in infos or [] if isinstance(v, dict) and v.get("Collection") == collection
            and str(v.get("Id", "")).isdigit()}


def located(answer: object) -> bool:
    """Whether a master's /dir/lookup answer names at least one location."""
    return isinstance(answer, dict) and bool(answer.get("locations"))


def collection_ids(plan: ClusterPlan, host: Host, collection: str, machines: Iterable[str]) -> set[int]:
    """The ids of `collection`'s volumes on the volume servers of `machines` that answer."""
    ids: set[int] = set()
    for name in machines:
        code, status = _get(host, f"http://{plan.machine(name).addr}:{VOLUME_PORT}/status")
        if code == 200:
            ids |= held_ids(status, collection)
    return ids


def unfindable(plan: ClusterPlan, host: Host, collection: str, ids: set[int]) -> list[int]:
    """The ids no master can locate yet (any master answers for the leader it follows)."""
    missing = []
    for vid in sorted(ids):
        answer: object = None
        for m in plan.masters:
            code, answer = _get(host, f"http://{m.addr}:{MASTER_PORT}/dir/lookup?volumeId={vid}"
                                      f"&collection={collection}")
            if code in (200, 404, 503):  # a master that answered; 404/503: not known (yet)
                break
        if not located(answer):
            missing.append(vid)
    return missing


def wait_findable(plan: ClusterPlan, host: Host, collection: str, machines: Iterable[str],
                  timeout: float = FIND_TIMEOUT) -> None:
    """Return once every volume of `collection` held by `machines` can be located; raise
    StorageError naming the ones that cannot after `timeout`."""
    machines = [m for m in machines if any(p.name == m for p in plan.machines)]
    deadline = time.monotonic() + timeout
    while True:
        missing = unfindable(plan, host, collection, collection_ids(plan, host, collection, machines))
        if not missing:
            return
        if time.monotonic() > deadline:
            raise StorageError(f"the data of {collection} is not readable yet: no master knows where "
                               f"volume(s) {', '.join(map(str, missing))} live after {timeout:.0f}s "
                               "(is a master leader elected? see $VCAPP_DATA_DIR/storage/log/master.log)")
        time.sleep(POLL)
