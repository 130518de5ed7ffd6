"""Storage loops: this machine's SeaweedFS processes, and the cluster's replication level.

StorageLoop (every machine), in a thread, every CONVERGE_EVERY_S once the cluster has its
first volume (/vc/storage/enabled): plan from the members (storage/plan.py) and converge
this machine's master/volume/filer processes to it (storage/storaged.py). The processes are
this daemon's children in spirit: a power-off kills them, the next boot restarts them.
It also makes connections to the storage ports of a machine whose lease expired fail at
once until its lease is back, and aborts this machine's open connections to its storage and
etcd (storage/fastfail.py): SeaweedFS clients otherwise wait ~20 s on a dead master leader or
volume server before trying the next, and a filer whose etcd client used the dead member hung.

ReplicationLoop (the controller), in a thread, whenever the set of live machines or of
storage-drained ones changes and every HEAL_EVERY_S: lower the volumes' replication to what
the live machines can hold (degraded: writes continue on two) or raise it back and copy the
missing replicas (healed); move every copy off a machine drained with its storage (again
every RETRY_AFTER_S until none is left); publish the result in /vc/storage/state for
`vcapp status`, the dashboard and the plan (no volume server on an evacuated machine).
"""

from __future__ import annotations

import logging
import time

from storage import evacuate, fastfail, replication, storaged
from storage import volumes as engine
from storage.host import LocalHost, weed_binary
from vcapp.machine import ETCD_CLIENT_PORT, run_dir
from vcapp.node.harness import Every, Job, Worker
from vcapp.state import events, membership, peerwatch, volumes
from vcapp.state.store import Store, per_thread_store, put_op, unchanged

log = logging.getLogger("vcapp.storage")

CONVERGE_EVERY_S = 2.0  # a crashed weed process is back within ~2 s; the check is a few stat()s
# Heal also catches what a change of the live set could not (a weed shell that timed out).
HEAL_EVERY_S = 60.0
RETRY_AFTER_S = 10.0
# Long enough for SeaweedFS's clients to move on to the new master leader and the other
# replicas (seconds once their dials fail fast); short enough that a machine that was only
# partitioned gets through again soon after its cable is back.
FASTFAIL_FOR_S = 30.0  # after a failed weed shell (no master leader yet, say)
# A lone master can only be joined by a retired master in the seconds before that one's machine
# stops it: it is asked for stray Raft peers this long after it (or the daemon) started.
STRAY_WATCH_S = 60.0
ERROR_CHARS = 400  # of a failed pass's message kept in the state (a weed shell's tail)


class StorageLoop:
    name = "storage"

    def __init__(self, ctx) -> None:
        self.cfg, self.base = ctx.cfg, ctx.base
        self.fastfailed: set[str] = set()  # addrs whose storage ports are rejected here
        self.cleaned = False
        self.enabled: bool | None = None  # storage enabled, as the last tick read it (None: not yet)
        self.master_started = time.monotonic()  # a master outlives the daemon: watch from its start too
        # One Store for the worker's passes: a new one logs in to etcd again, and etcd checks
        # every login's password with bcrypt (a new Store every 2 s was each member's only login).
        self.store = per_thread_store(lambda: self.cfg.store_endpoints())
        # etcd unreachable, a weed binary missing: said once, tried again next period.
        self.worker = Worker("vcapp-storage", self._sync, CONVERGE_EVERY_S, gap=True, log=log,
                             failed=lambda e: log.warning("storage: %s", e))
        self.worker.start()

    def step(self, ctx) -> None:
        self.cfg = ctx.cfg
        self._wake_on_liveness(ctx.store)

    def _wake_on_liveness(self, store: Store) -> None:
        """A pass at once when a machine's lease ended or came back since the last tick: the
        dead machine's storage fails fast before an instance moved here mounts its volume
        (that mount otherwise waited on the dead volume servers for ~1 s until the next timed
        pass); and when the cluster's first volume enables storage. Two small reads per tick,
        within the tick's view."""
        def read() -> tuple[bool, frozenset[str]]:
            self.enabled = volumes.storage_enabled(store)
            return self.enabled, frozenset(membership.alive_machines(store))
        self.worker.wake_on_change(read)

    def _sync(self) -> None:
        self._pass(self.store())

    def _pass(self, store: Store) -> None:
        # The tick's view says whether the cluster has storage (and wakes the pass when that
        # changes; once enabled it stays): the pass asks etcd only before the first tick.
        enabled = self.enabled if self.enabled is not None else volumes.storage_enabled(store)
        if not enabled:
            return
        alive = membership.alive_machines(store)
        plan = volumes.storage_plan(store, self.cfg, alive)
        host = LocalHost(self.cfg.name)
        started = storaged.converge(plan, host, self.base, run_dir(), weed_binary())
        if started:
            log.info("storage: started %s", ", ".join(started))
        if "master" in started:
            self.master_started = time.monotonic()
        if time.monotonic() - self.master_started < STRAY_WATCH_S and (stray := storaged.stray_peers(plan, host)):
            log.warning("storage: the lone master let retired master(s) %s into its Raft and has no quorum; "
                        "restarting it afresh", ", ".join(stray))
            storaged.stop(run_dir(), "master")
            storaged.converge(plan, host, self.base, run_dir(), weed_binary())
            self.master_started = time.monotonic()
        self._fastfail(host, {m.addr for m in plan.machines if m.name != self.cfg.name},
                       {m.addr for m in plan.machines if m.name not in alive and m.name != self.cfg.name})

    def _fastfail(self, host: LocalHost, others: set[str], dead: set[str]) -> None:
        if not self.cleaned:  # rules a previous run of the daemon left behind
            for addr in others - dead:
                fastfail.mark_alive(host, addr)
            self.cleaned = True
        for addr in sorted(dead - self.fastfailed):
            fastfail.mark_dead(host, addr, abort_also=(ETCD_CLIENT_PORT,))  # the filers' metadata store
            log.info("storage: connections to %s's storage fail at once while it is down", addr)
        for addr in sorted(self.fastfailed - dead):
            fastfail.mark_alive(host, addr)
            log.info("storage: %s is back; its storage is reachable again", addr)
        self.fastfailed = set(dead)


class ReplicationLoop:
    name = "replication"

    def __init__(self, ctx) -> None:
        self.cfg = ctx.cfg
        self.seen: tuple[frozenset[str], frozenset[str]] | None = None  # live, storage-drained
        self.code: str | None = None  # the code the rules were last set to
        self.heal = Every(HEAL_EVERY_S)  # begun by each convergence started
        self.hold = Every(RETRY_AFTER_S)  # begun by each failure or unfinished drain: none starts before
        # Two jobs: setting the rules takes seconds; copying a degraded period's volumes and
        # moving a drained machine's copies take minutes under the admin lock. A machine lost
        # while copies are made must not wait for them: every write needs the full copy count
        # until the rules are lowered (the soak: a machine killed a few seconds into the heal
        # that its predecessor's return began left the volume app unable to write).
        self.job = Job("vcapp-replication")
        self.copies = Job("vcapp-replication-copies")

    def step(self, ctx) -> None:
        self.cfg = ctx.cfg
        # A machine the others confirm unreachable (vcapp/state/peerwatch.py) holds no copy of
        # new writes from then on, seconds before its lease ends: once its lease ends, the
        # storage connections to it are cut (StorageLoop) and every write assigned with the
        # old copy count fails, and SeaweedFS's filer retries such an assignment, with the
        # count it began with, for 30 s (the soak, bench/soak.py: a machine killed, the volume
        # app on another machine could not write for 35-45 s).
        live = peerwatch.reachable(ctx.store)
        seen = (frozenset(live), frozenset(volumes.storage_drained(ctx.store)))
        due = (seen != self.seen or self.heal.ready()) and self.hold.ready()
        if not due or self.job.running():
            return
        if not volumes.storage_enabled(ctx.store) or not (volumes.list_volumes(ctx.store)
                                                          or volumes.list_buckets(ctx.store)):
            return
        self.seen = seen
        self.heal.mark()
        self.job.start(self._converge, *seen)

    def _converge(self, live: frozenset[str], drained: frozenset[str]) -> None:
        """Set the rules for `live`; publish a degraded state at once, and leave the copies (a
        heal, a drain) to their own job, which publishes when it is done."""
        try:
            began = time.monotonic()
            store = Store(self.cfg.store_endpoints())
            plan = volumes.storage_plan(store, self.cfg)
            host, weed = LocalHost(self.cfg.name), weed_binary()
            result = engine.set_rules(plan, host, volumes.live_sites(store, live), weed)
            if result["code"] != self.code:
                log.info("storage: new writes keep %d copies (%d machine(s) alive); set in %.1fs",
                         replication.copies(result["code"]), len(live), time.monotonic() - began)
            self.code = result["code"]
            before = store.value(volumes.STATE) or {}
            # What the last copies job found of the drains stays true until the next one; the code
            # is always the rules' own (an instance moved here waits for it: volumes.wait_writable).
            if result["state"] == "degraded":
                self._publish(store, before, dict(before, **result, healed=[], live=len(live), counted=sorted(live)))
            elif before and before.get("code") != result["code"]:  # raised: degraded until the copies are made
                self._publish(store, before, dict(before, code=result["code"], live=len(live), counted=sorted(live)))
            if (result["state"] == "healthy" or drained) and not self.copies.start(self._copy, result, live, drained):
                self.seen = None  # the copies of an earlier pass are still being made: again later
                self.hold.mark()
        except Exception as e:
            self.seen = None
            self.hold.mark()
            log.warning("storage replication: %s", e)
            self._record_failure(e)

    def _copy(self, rules: dict, live: frozenset[str], drained: frozenset[str]) -> None:
        try:
            store = Store(self.cfg.store_endpoints())
            plan = volumes.storage_plan(store, self.cfg)
            host, weed = LocalHost(self.cfg.name), weed_binary()
            healed = engine.heal(plan, host, rules["code"], weed) if rules["state"] == "healthy" else []
            left = {name: evacuate.evacuate(plan, host, name, weed)
                    for name in sorted(drained) if name in {m.name for m in plan.machines}}
            result = dict(rules, healed=healed, live=len(live), counted=sorted(live))
            result["evacuated"] = sorted(name for name, ids in left.items() if not ids)
            result["evacuating"] = {name: len(ids) for name, ids in left.items() if ids}
            if self.code != rules["code"]:
                return  # machines came or went meanwhile: the newer rules' pass publishes
            before = store.value(volumes.STATE) or {}
            self._publish(store, before, result)
            for name in sorted(set(result["evacuated"]) - set(before.get("evacuated") or ())):
                events.record(store, "storage", f"{name}'s copies of app data moved to other machines; it keeps "
                              "none until `vcapp node undrain`", node=name)
            if result["evacuating"]:  # a copy with nowhere to go yet: look again after a while
                self.seen = None
                self.hold.mark()
        except Exception as e:
            self.seen = None
            self.hold.mark()
            log.warning("storage replication: %s", e)
            self._record_failure(e)

    def _record_failure(self, e: Exception) -> None:
        """Say in the state why the last pass failed (`vcapp status`, an upgrade waiting for the
        copies): the state itself stays what the last finished pass found. Best effort: etcd
        may be what failed."""
        try:
            store = Store(self.cfg.store_endpoints())
            entry = store.get(volumes.STATE)
            before = entry.value if entry and isinstance(entry.value, dict) else {}
            if before and before.get("error") != (error := str(e)[-ERROR_CHARS:]):
                # Only onto the state it read: the other job may publish a finished pass meanwhile.
                store.txn([unchanged(volumes.STATE, entry.mod_revision)],
                          [put_op(volumes.STATE, dict(before, error=error, failed_at=time.time()))])
        except Exception as again:
            log.warning("storage replication: could not record the failure: %s", again)

    @staticmethod
    def _publish(store: Store, before: dict, result: dict) -> None:
        result = {k: v for k, v in result.items() if k not in ("error", "failed_at")}  # a pass finished
        store.put(volumes.STATE, dict(result, at=time.time()))
        if before.get("state") != result.get("state"):
            events.record(store, "storage", _message(result, result["live"]))


def _message(result: dict, live: int) -> str:
    copies = replication.copies(result["code"])
    if result["state"] == "degraded":
        return (f"storage degraded: {live} machine(s) alive, new writes keep {copies} copies; "
                "a third copy is made when a machine returns or joins")
    healed = f", {len(result['healed'])} volume(s) copied again" if result.get("healed") else ""
    return f"storage healthy: {copies} copies of app data{healed}"
