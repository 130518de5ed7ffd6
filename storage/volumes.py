"""App volumes: a filer directory per volume with its own storage rule, degrade and heal.

    filer path    /volumes/<app>/<name>/           what `weed mount` serves
    rule          fs.configure locationPrefix=/volumes/<app>/<name>/
                  collection=vol_<app>_<name> (its own SeaweedFS volumes, so its size can
                  be measured and capped), replication=<code for the live machines>, fsync
    record        /vcapp/volumes/<app>/<name>.json in the filer: {"size_mb": ...}

`delete_volume` removes all three and the collection's SeaweedFS volumes on every machine.

SeaweedFS writes every copy (W=N) and a volume that lost a copy stops taking writes, so the
rule's replication follows the machines alive: 3 copies with >= 3 alive, 2 with 2 (degraded).
New data then lands on new volumes that fit; `converge_replication` raises the rules back and
copies the degraded-period volumes to a third machine (`volume.configure.replication` +
`volume.fix.replication`) when machines return.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

from storage import replication, shell
from storage.host import Host, StorageError
from storage.plan import FILER_PORT, ClusterPlan

VOLUMES_ROOT = "/volumes"
RECORDS_ROOT = "/vcapp/volumes"
BUCKETS_ROOT = "/buckets"
# The filers' own log of metadata changes, written as changes come (SeaweedFS puts it under
# this path with the matching rule's replication, else the filer's default of every member):
# it follows the app data's code. Without the rule, while a machine was down every write of
# it failed after 30 s of retries ("metadata log write failed ... no writable volumes").
META_LOG = "/topics/.system/"
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
# Volume records are tiny files on the local filer (metadata in etcd): ms when healthy;
# 10 s covers an etcd leader election.
RECORD_TIMEOUT = 10.0
RECORD_RETRY_S = 30.0  # a new storage cluster grows its first volumes within seconds
MAX_FIX_ROUNDS = 3  # volume.fix.replication adds one copy per volume per run; 2 -> 3 needs one


@dataclass(frozen=True)
class Volume:
    app: str
    name: str
    size_mb: int

    @property
    def path(self) -> str:
        return f"{VOLUMES_ROOT}/{self.app}/{self.name}"

    @property
    def collection(self) -> str:
        return collection(self.app, self.name)


def collection(app: str, name: str) -> str:
    return f"vol_{app}_{name}".replace("-", "_")


def check_names(app: str, name: str) -> None:
    for what, value in (("app", app), ("volume", name)):
        if not NAME.fullmatch(value):  # whole: `$` would pass a final newline
            raise StorageError(f"{what} name {value!r} must be lowercase letters, digits and '-' (max 41)")


def rule_command(prefix: str, coll: str, code: str) -> str:
    """fs.configure line for a path rule (volumeGrowthCount must be a multiple of the copies).
    `coll` empty: keep SeaweedFS's own (a bucket's collection is its name and may not be set)."""
    collection_flag = f"-collection={coll} " if coll else ""
    return (f"fs.configure -locationPrefix={prefix} {collection_flag}-replication={code} -fsync "
            f"-volumeGrowthCount={replication.copies(code)} -apply")


def create_volume(plan: ClusterPlan, host: Host, app: str, name: str, size_mb: int,
                  live_sites: list[str], weed: str) -> Volume:
    """Create (or resize) volume `name` of `app`; idempotent. `live_sites`: site of each live machine."""
    check_names(app, name)
    if size_mb <= 0:
        raise StorageError(f"volume size must be positive, got {size_mb} MB")
    vol = Volume(app, name, size_mb)
    code = replication.choose_code(live_sites)
    shell.run(plan, host, [f"fs.mkdir {vol.path}", rule_command(vol.path + "/", vol.collection, code)], weed)
    _put_record(plan, host, vol)
    return vol


def _filer_url(plan: ClusterPlan, host: Host, path: str) -> str:
    return f"http://{plan.machine(host.name).addr}:{FILER_PORT}{path}"


def _put_record(plan: ClusterPlan, host: Host, vol: Volume) -> None:
    """Write the volume's record, retried for RECORD_RETRY_S: right after the storage cluster
    starts, the filer answers 5xx until the volumes for a new rule are grown."""
    url = _filer_url(plan, host, f"{RECORDS_ROOT}/{vol.app}/{vol.name}.json")
    body = json.dumps({"app": vol.app, "name": vol.name, "size_mb": vol.size_mb})
    deadline = time.monotonic() + RECORD_RETRY_S
    while True:
        out = host.run(["curl", "-sS", "-f", "--max-time", str(RECORD_TIMEOUT), "-X", "PUT", "-H",
                        "Content-Type: application/json", "--data-binary", "@-", url], input=body,
                       timeout=RECORD_TIMEOUT + 5)
        if out.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise StorageError(f"could not record volume {vol.app}/{vol.name} in the filer ({url}): "
                               f"{out.stderr.strip() or f'curl exit {out.returncode}'}")
        time.sleep(1.0)


def delete_volume(plan: ClusterPlan, host: Host, app: str, name: str, weed: str) -> None:
    """Delete volume `name` of `app` for good: its files (filer directory), its record, its
    collection (the SeaweedFS volumes that held its chunks, every copy on every machine, so
    no byte of it stays on a disk) and its path rule. Idempotent: a retry after a failure
    halfway finishes the job. Its `weed mount`s must be gone first (nobody writes meanwhile)."""
    check_names(app, name)
    vol = Volume(app, name, 0)
    _filer_delete(plan, host, vol.path + "/", recursive=True)
    _filer_delete(plan, host, f"{RECORDS_ROOT}/{app}/{name}.json")
    commands = [f"fs.configure -locationPrefix={vol.path}/ -delete -apply"]
    if any(c["collection"] == vol.collection for c in shell.volume_copies(plan, host, weed)):
        commands.append(f"collection.delete -collection={vol.collection} -apply")
    shell.run(plan, host, commands, weed)


def _filer_delete(plan: ClusterPlan, host: Host, path: str, recursive: bool = False) -> None:
    """DELETE a filer entry (a directory with everything under it when `recursive`); gone already is fine."""
    query = "?recursive=true&ignoreRecursiveError=false" if recursive else ""
    url = _filer_url(plan, host, path) + query
    out = host.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", str(RECORD_TIMEOUT),
                    "-X", "DELETE", url], timeout=RECORD_TIMEOUT + 5)
    code = out.stdout.strip()
    if out.returncode != 0 or not (code.startswith("2") or code == "404"):
        raise StorageError(f"could not delete {path} in the filer on {host.name} (HTTP {code or '-'}): "
                           f"{out.stderr.strip() or 'is the filer up?'}")


def get_volume(plan: ClusterPlan, host: Host, app: str, name: str) -> Volume:
    """The volume's record; raises if it was never created."""
    check_names(app, name)
    url = _filer_url(plan, host, f"{RECORDS_ROOT}/{app}/{name}.json")
    out = host.run(["curl", "-sf", "--max-time", str(RECORD_TIMEOUT), url], timeout=RECORD_TIMEOUT + 5)
    if out.returncode != 0:
        raise StorageError(f"volume {app}/{name} does not exist (or the filer on {host.name} is down): "
                           f"create it with `vcapp volumes create {app} {name} --size ...`")
    rec = json.loads(out.stdout)
    return Volume(app, name, int(rec["size_mb"]))


def rules(plan: ClusterPlan, host: Host, weed: str) -> list[dict]:
    """The filer's path rules (fs.configure's JSON)."""
    return parse_rules(shell.run(plan, host, ["fs.configure"], weed))


def parse_rules(text: str) -> list[dict]:
    """The path rules in `fs.configure`'s output (its JSON); ValueError when it holds none
    that parse."""
    start = text.find("{")
    return json.loads(text[start:text.rfind("}") + 1]).get("locations", []) if start >= 0 else []


def converge_replication(plan: ClusterPlan, host: Host, live_sites: list[str], weed: str) -> dict:
    """Make every app data rule use the code that fits the live machines; when that code
    has the full copy count, raise degraded-period volumes to it and copy them (heal).
    Returns {"code": ..., "state": healthy|degraded, "changed_rules": n, "healed": [ids]}."""
    result = set_rules(plan, host, live_sites, weed)
    healed = heal(plan, host, result["code"], weed) if result["state"] == "healthy" else []
    return dict(result, healed=healed)


def set_rules(plan: ClusterPlan, host: Host, live_sites: list[str], weed: str) -> dict:
    """Make every app data rule use the code that fits the live machines: new writes need
    only the copies those machines can take. Seconds, and no admin lock: it never waits on
    a heal that holds the lock while it copies volumes.
    Returns {"code": ..., "state": healthy|degraded, "changed_rules": n}."""
    code = replication.choose_code(live_sites)
    found = rules(plan, host, weed)
    changed = [r for r in found
               if r["locationPrefix"].startswith((VOLUMES_ROOT + "/", BUCKETS_ROOT + "/"))
               and r.get("replication") != code]
    commands = [rule_command(r["locationPrefix"], r.get("collection", ""), code) for r in changed]
    if not any(r["locationPrefix"] == META_LOG and r.get("replication") == code for r in found):
        commands.append(rule_command(META_LOG, "", code))
    if commands:
        shell.run(plan, host, commands, weed)
    return {"code": code, "state": replication.state(code), "changed_rules": len(changed)}


def under_replicated(copies: list[dict], code: str) -> dict[int, dict]:
    """Volumes (by id) whose code is lower than `code` or that have fewer copies than their code."""
    by_id: dict[int, list[dict]] = {}
    for c in copies:
        by_id.setdefault(c["id"], []).append(c)
    want = replication.copies(code)
    found = {}
    for vid, cs in by_id.items():
        rp = cs[0]["replication"]
        if replication.copies(rp) < want or len(cs) < replication.copies(rp):
            found[vid] = {"replication": rp, "copies": len(cs), "collection": cs[0]["collection"]}
    return found


def heal(plan: ClusterPlan, host: Host, code: str, weed: str) -> list[int]:
    """Give every volume `code`'s copy count again. Returns the ids that were short."""
    short = under_replicated(shell.volume_copies(plan, host, weed), code)
    if not short:
        return []
    raise_cmds = [f"volume.configure.replication -volumeId={vid} -replication={code}"
                  for vid, v in short.items() if replication.copies(v["replication"]) < replication.copies(code)]
    for _ in range(MAX_FIX_ROUNDS):
        shell.run(plan, host, [*raise_cmds, "volume.fix.replication -apply"], weed)
        raise_cmds = []
        if not under_replicated(shell.volume_copies(plan, host, weed), code):
            break
    return sorted(short)


def replica_report(plan: ClusterPlan, host: Host, vol: Volume, weed: str) -> dict[int, int]:
    """volume id -> number of copies, for the volumes holding `vol`'s data."""
    counts: dict[int, int] = {}
    for c in shell.volume_copies(plan, host, weed):
        if c["collection"] == vol.collection:
            counts[c["id"]] = counts.get(c["id"], 0) + 1
    return counts
