"""The runtime's loop on every machine: this machine's assignments -> podman containers -> status.

A background thread (podman calls and health checks take seconds; the daemon's tick must
not wait for them) does, every PASS_EVERY_S:
  1. take this machine's assignments (/vc/assign/*) and the secrets those instances name, as
     the daemon's tick read them in its view of the cluster (`step`), or read them itself when
     that read is older than TICK_READ_FRESH_S;
  2. `runtime.supervisor.Agent.step(specs)`: create, restart with back-off, roll new releases
     (new healthy before old stops; a release that fails its health check is not promoted);
  3. write each report to /vc/status/<node>/<app>/<inst> with the node's liveness lease, so a
     dead machine's reports vanish with it; delete reports of instances no longer here;
     a container about to stop is handed off first (`_handoff`): its instance's new report
     (or its deletion) is written at once and the pass waits until every router has
     switched (vcapp/state/routeswitch.py) before the agent drains and stops it;
  4. record events: crashes (restart count went up), promotions, releases not promoted, and
     an instance healthy again after a failover (with the seconds it took);
  5. every 30 s, compact the files of this machine's volumes that many fsyncs left in many
     chunks, the app paused meanwhile (vcapp/node/volume_compaction.py).

Self-fencing: the daemon's lease keeper (vcapp/node/lease.py) says when the lease was last
confirmed. Once it has not been for FENCE_AFTER_S (FENCE_MARGIN_S before its TTL runs
out and the others may start this machine's instances elsewhere), a watchdog thread kills
the weed mounts of the volumes of every instance here whose assignment has `volumes`, then
those instances (two writers on one volume is the failure that loses data; an app blocked in
a FUSE flush outlives SIGKILL until its mount answers or dies), and the pass stops running
them; the rest keep running from the last assignments it read. The watchdog is separate
because the pass itself can hang for seconds on etcd reads that cannot answer during the
very partition it must react to. The fence lifts only after the lease is confirmed again
*and* the assignments were read afresh since, so a healed machine never restarts an instance
that has meanwhile moved.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from runtime.podman import PodmanDriver, PodmanError
from runtime.replace import Promotion
from runtime.spec import InstanceSpec
from runtime.supervisor import Agent, PrepareError, specs_from
from storage.host import StorageError
from vcapp import machine
from vcapp.errors import VcError
from vcapp.machine import kept_logs_dir
from vcapp.node.harness import Worker
from vcapp.node.lease import LEASE_TTL
from vcapp.node.volume_compaction import Compactor
from vcapp.state import events, instances, keys, routeswitch, secrets, volumes
from vcapp.state.store import Store, StoreUnavailable

log = logging.getLogger("vcapp.runtime")

# Crash detection and health checks run this often; a crashed instance restarts within ~2 s.
PASS_EVERY_S = 1.0
# Fields whose change is written at once.
STATUS_FIELDS = ("release", "state", "health", "restarts", "host_port", "container", "message")
# A report whose state did not change is rewritten after STATUS_REFRESH_S when its usage moved
# this much (`vcapp ps`, the apps' CPU and memory history), and after STATUS_MAX_AGE_S anyway.
# Each write is an etcd revision, after which every machine's tick reads the cluster afresh
# (vcapp/state/store.py shared_reads): rewritten every 5 s, an idle app's reports kept the
# revision moving.
STATUS_REFRESH_S = 5.0
STATUS_MAX_AGE_S = 60.0
CPU_MOVED_POINTS = 2.0  # percent of one core
MEMORY_MOVED = (4.0, 0.05)  # MB, and a share of the last figure: whichever is larger
# etcd drops the lease LEASE_TTL s after the last renewal it saw. Fence this much sooner so
# the instances are dead before anyone may be told to start them elsewhere: it covers the lag
# from a renewal to `step`, the watchdog interval and a `podman kill`, with room to spare.
FENCE_MARGIN_S = 2.0
FENCE_AFTER_S = LEASE_TTL - FENCE_MARGIN_S
# The pass reads the assignments itself when the tick's last read (`step`) is older than this:
# the tick stopped (etcd unreachable, or a loop stuck); it then finds out for itself.
TICK_READ_FRESH_S = 1.0
# How often the watchdog looks; cheap (a clock read) until the lease goes stale.
FENCE_CHECK_S = 0.2
# An instance moving off this live machine (drain, respread) keeps serving here until its
# successor is healthy, but no longer than this: a successor that never comes up must not
# pin the old one forever (its placement is the placer's to fix).
HANDOVER_TIMEOUT_S = 300.0


class RuntimeLoop:
    name = "runtime"

    def __init__(self, ctx) -> None:
        self.node = ctx.cfg.name
        self.endpoints = ctx.cfg.store_endpoints()
        self.lease = ctx.lease
        self.lease_confirmed = ctx.lease_confirmed
        self.lease_ok_at = time.monotonic()
        self.stale = False  # the lease had gone stale at the last look
        self.lease_lock = threading.Lock()
        self.cfg, self.base = ctx.cfg, Path(ctx.base)
        driver = PodmanDriver.from_env(authfile=machine.registry_auth_file(),  # pulls with the machine credential
                                       kept_logs=kept_logs_dir())
        self.agent = Agent(driver, self.node, self.base / "runtime" / "book.json", prepare=self._prepare,
                           handoff=self._handoff, on_ready=lambda: self.worker.wake())
        self.compactor = Compactor(driver, self.base, self.cfg.addr)
        self.store: Store | None = None
        self.store_endpoints: list[str] | None = None  # what `store` was made for
        self.publisher = Publisher(self.node)
        self.desired: dict = {"assignments": [], "secrets": {}}
        self.assigned: dict[str, dict] = {}  # app/inst -> assignment, as the current pass reads it
        self.held: dict[str, dict] = {}  # app/inst -> assignment of an instance handed over elsewhere
        self.read_at = 0.0  # monotonic start of the last successful read of the assignments
        self.regained_at = 0.0  # when the lease was last confirmed after going stale
        self.fenced = False
        self.online = False  # the current pass's assignments were read from etcd (TICK_READ_FRESH_S)
        # Each outlives a bad pass or look: the next one tries again.
        self.worker = Worker("vcapp-runtime", self._sync, PASS_EVERY_S, log=log,
                             failed=lambda e: log.exception("runtime pass failed; trying again"))
        self.watchdog = Worker("vcapp-fence", self._watch, FENCE_CHECK_S, gap=True, log=log,
                               failed=lambda e: log.exception("self-fencing could not kill this machine's "
                                                              "volume owners"))
        self.worker.start()
        self.watchdog.start()

    def step(self, ctx) -> None:
        if ctx.lease:
            self.lease = ctx.lease
        self._lease_lost()
        self.endpoints, self.cfg = ctx.cfg.store_endpoints(), ctx.cfg
        self._read_desired(ctx.store)
        self._wake_on_placement(ctx.store)

    def _wake_on_placement(self, store: Store) -> None:
        """A pass at once when a placement was written since the last tick: an instance moved
        here by a failover or a new release starts up to PASS_EVERY_S sooner. One key-only read
        per tick (within the tick's view); removals wait for the next pass."""
        self.worker.wake_on_change(lambda: instances.placed_at(store))

    # ---- the pass, on the worker's thread ------------------------------------------------

    def _sync(self) -> None:
        if self.endpoints != self.store_endpoints:
            self.store, self.store_endpoints = Store(self.endpoints), list(self.endpoints)
        self._pass(self.store)

    def _pass(self, store: Store) -> None:
        online = self._desired_now(store)
        doc = self._fence(self.desired)
        specs, errors = specs_from(doc, self.node)
        held = {} if self.fenced else self.held
        self.assigned = {**held, **{f"{a['app']}/{a['instance']}": a for a in doc["assignments"]}}
        self.online = online
        try:
            reports = self.agent.step(specs, errors, hold=set(held))
        except PodmanError as e:
            log.warning("podman failed on %s: %s", self.node, e)
            return
        if online and not self.fenced:
            self.publisher.publish(store, self.lease, reports, self.assigned)
            wanted = {(s.app, v.source) for s in specs for v in s.volumes}
            if self.agent.busy_retiring:  # a stopping container may still use a volume
                return
            for gone in volumes.release_unused(store, self.cfg, self.base, wanted):
                log.info("volume %s unmounted here: no instance here uses it any more", gone)
            self.compactor.step(specs)

    def _handoff(self, key: str, report: dict | None, leaving_port: int | None = None) -> None:
        """Publish what now stands for `key` (None: nothing here), then wait for the routers
        to switch (routeswitch.SWITCH_TIMEOUT_S at most). `leaving_port`: the old container's
        when the instance leaves this machine; this machine's router keeps it on its hop server
        meanwhile, for the routers that have not switched yet. Offline or fenced: nothing to
        wait for, the routers cannot be asked."""
        store = self.store
        if store is None or self.fenced or not self.online or not self.lease:
            return
        app, _, inst = key.partition("/")
        began = time.monotonic()
        try:
            if leaving_port:  # known to this machine's router before the report goes
                routeswitch.ask(store, self.node, app, inst, self.lease, leaving_port)
            if report is None:
                self.publisher.drop(store, key)
            else:
                self.publisher.publish_one(store, self.lease, key, report, self.assigned.get(key, {}))
            asked = routeswitch.ask(store, self.node, app, inst, self.lease, leaving_port)
            try:
                late = routeswitch.wait(store, asked)
            finally:
                routeswitch.close(store, self.node, app, inst)
        except StoreUnavailable:
            log.warning("%s: etcd unreachable, the routers could not be asked to switch first", key)
            return
        if late:
            log.warning("%s: routers of %s did not switch within %.0fs; stopping the old container anyway",
                        key, ", ".join(late), routeswitch.SWITCH_TIMEOUT_S)
        else:
            log.info("%s: every router switched in %.2fs", key, time.monotonic() - began)

    def _prepare(self, spec: InstanceSpec) -> dict[str, str]:
        """Mount the instance's volumes here (the writer key first) before its container starts."""
        binds = {}
        for v in spec.volumes:
            log.info("mounting volume %s of %s here", v.source, spec.key)
            try:
                binds[v.source] = volumes.mount_for_instance(self.store, self.cfg, self.lease, self.base, spec.app,
                                                             spec.instance, v.source, v.size_mb)
            except (StorageError, VcError) as e:
                raise PrepareError(f"volume {v.source} of {spec.key} cannot be mounted here: {e}") from None
            log.info("volume %s of %s mounted at %s", v.source, spec.key, binds[v.source])
        return binds

    def _desired_now(self, store: Store) -> bool:
        """Whether the desired state is etcd's now: the tick's read, or this pass's own."""
        return time.monotonic() - self.read_at <= TICK_READ_FRESH_S or self._read_desired(store)

    def _read_desired(self, store: Store) -> bool:
        """Refresh the desired state from etcd; on failure keep the last one (returns False).
        The tick does, in its view of the cluster (answers carried over while nothing was
        written: no request on an idle cluster); a pass only when the tick's is not fresh."""
        began = time.monotonic()
        try:
            every = instances.every_assignment(store)
            mine = [a for a in every if a.get("node") == self.node]
            wanted = {a["app"] for a in mine if a.get("secrets")}
            values = {app: secrets.values_for(store, app) for app in wanted}
            self.held = self._handing_over(store, every)
        except StoreUnavailable:
            return False
        except Exception as e:
            log.warning("cannot read this machine's assignments: %s", type(e).__name__)
            return False
        mine = [with_s3_endpoint(a, self.cfg.addr) for a in mine]
        self.desired, self.read_at = {"assignments": mine, "secrets": values}, began
        return True

    def _handing_over(self, store: Store, every: list[dict]) -> dict[str, dict]:
        """Instances moved from this machine to a live one whose successor does not serve yet:
        they keep running here (HANDOVER_TIMEOUT_S at most)."""
        held = {}
        for a in every:
            move = a.get("handover") or {}
            if move.get("from") != self.node or a.get("node") == self.node:
                continue
            if time.time() - float(move.get("at") or 0) > HANDOVER_TIMEOUT_S:
                continue
            there = instances.report(store, a["node"], a["app"], a["instance"])
            if str(there.get("release")) == str(a.get("release")) and there.get("health") in ("healthy", "-") \
                    and there.get("state") == "running":
                continue
            held[f"{a['app']}/{a['instance']}"] = a
        return held

    def _lease_lost(self) -> bool:
        """Whether the lease went unconfirmed for FENCE_AFTER_S; a confirmation after such a
        gap marks the assignments read before it as possibly stale (regained_at)."""
        confirmed = self.lease_confirmed()
        with self.lease_lock:
            if confirmed > self.lease_ok_at:
                if self.stale:
                    self.regained_at = time.monotonic()
                self.lease_ok_at = confirmed
            self.stale = time.monotonic() - self.lease_ok_at > FENCE_AFTER_S
            return self.stale

    def _watch(self) -> None:
        """Kill volume-owning instances the moment the lease goes stale (see the module docstring)."""
        if not self._lease_lost():
            return
        owned = [a for a in self.desired["assignments"] if a.get("volumes")]
        if not owned:
            return
        # Their volumes' weed mounts first, by signal (no podman: its calls wait on its lock for
        # seconds while the runtime pass runs one). A flush a mount still retries would land after
        # the new owner's writes and replace the file's entry with this machine's older one; and
        # an app blocked in that flush dies only once its mount is gone.
        pairs = {(a["app"], v["source"]) for a in owned for v in a["volumes"] if v.get("source")}
        if stopped := volumes.stop_mounts(self.base, pairs):
            log.warning("lease stale for %.1fs: killed the weed mounts of %s (self-fencing)",
                        time.monotonic() - self.lease_ok_at, ", ".join(stopped))
        owners = {f"{a['app']}/{a['instance']}" for a in owned}
        doomed = [c.name for c in self.agent.driver.list() if c.key in owners and c.running]
        if doomed:
            log.warning("lease stale for %.1fs: killing %s (self-fencing)",
                        time.monotonic() - self.lease_ok_at, ", ".join(doomed))
            self.agent.driver.shell.run(["podman", "kill", "--signal", "KILL", *doomed])

    def _fence(self, doc: dict) -> dict:
        """Without a confirmed lease, and until the assignments were read again after it came
        back, drop instances that own volumes."""
        lost = self._lease_lost() or self.read_at < self.regained_at
        if lost != self.fenced:
            self.fenced = lost
            owners = [f"{a['app']}/{a['instance']}" for a in doc["assignments"] if a.get("volumes")]
            if lost:
                log.warning("lease not renewed for over %ss: self-fencing, stopping %s", FENCE_AFTER_S,
                            ", ".join(owners) or "nothing (no instance here owns a volume)")
            else:
                log.info("lease confirmed again: instances that own volumes may run here again")
        if not lost:
            return doc
        return dict(doc, assignments=[a for a in doc["assignments"] if not a.get("volumes")])


def with_s3_endpoint(assignment: dict, addr: str) -> dict:
    """An app with a bucket on the built-in storage talks to the S3 gateway of the machine it
    runs on (every machine runs one), so the bucket outlives whichever machine created it; an
    app whose bucket is on an external S3 service talks to that service (`s3_endpoint`)."""
    if not assignment.get("bucket"):
        return assignment
    endpoint = assignment.get("s3_endpoint") or volumes.s3_endpoint(addr)
    env = {**(assignment.get("env") or {}), "AWS_ENDPOINT_URL_S3": endpoint}
    return dict(assignment, env=env)


class Publisher:
    """Writes this machine's reports to etcd and turns their changes into events."""

    def __init__(self, node: str):
        self.node = node
        self.written: dict[str, tuple[dict, float, int]] = {}  # key -> (report, when, lease)
        self.noted: set[tuple] = set()  # (kind, app/inst, detail) already recorded as events

    def publish(self, store: Store, lease: int, reports: dict[str, dict], assigned: dict[str, dict]) -> None:
        for key, rep in reports.items():
            self.publish_one(store, lease, key, rep, assigned.get(key, {}))
        current = {keys.status(self.node, *k.split("/", 1)) for k in reports}
        for skey in set(self.written) - current:
            store.delete(skey)
            del self.written[skey]

    def publish_one(self, store: Store, lease: int, key: str, rep: dict, assign: dict) -> None:
        """Write `key`'s report unless the last write says the same and is fresh."""
        now = time.monotonic()
        # Whether this machine knows the instance owns a volume, i.e. will fence it; and
        # its process type (web unless the assignment says otherwise): routers serve web only.
        rep = dict(rep, owns_volumes=bool(assign.get("volumes")), process=assign.get("process") or "web")
        app, _, inst = key.partition("/")
        skey = keys.status(self.node, app, inst)
        old = self.written.get(skey)
        self._events(store, key, rep, old[0] if old else None, assign)
        if old and old[2] == lease and not report_due(old[0], rep, now - old[1]):
            return
        store.put(skey, rep, lease=lease)
        self.written[skey] = (rep, now, lease)

    def drop(self, store: Store, key: str) -> None:
        """`key` no longer runs here: its report goes."""
        app, _, inst = key.partition("/")
        skey = keys.status(self.node, app, inst)
        store.delete(skey)
        self.written.pop(skey, None)

    def _events(self, store: Store, key: str, rep: dict, old: dict | None, assign: dict) -> None:
        app, _, inst = key.partition("/")
        want = str(assign.get("release", ""))
        where = dict(app=app, instance=inst, node=self.node)
        if old and rep.get("restarts", 0) > old.get("restarts", 0):
            events.record(store, "crash", f"{key} on {self.node} restarted: {rep.get('message')}", **where)
        if old and old.get("release") != rep.get("release") and rep.get("release") == want \
                and rep.get("state") == "running":
            events.record(store, "promoted", f"{key} on {self.node}: release {want} took over from "
                                             f"{old.get('release')}", release=want, **where)
        refused = rep.get("promotion") or {}
        if refused.get("outcome") == Promotion.REFUSED.value and refused.get("release") == want:
            self._once(store, ("release.failed", key, want), "release.failed",
                       f"{key} on {self.node}: release {want} failed its health check: {refused.get('check')}; "
                       f"release {rep.get('release')} keeps serving", release=want, **where)
        move = assign.get("failover")
        if move and rep.get("health") == "healthy" and rep.get("release") == want:
            seconds = round(time.time() - float(move.get("at", time.time())), 2)
            self._once(store, ("failover", key, move.get("at")), "failover.healthy",
                       f"{key} healthy on {self.node} {seconds}s after it was moved off {move.get('from')}",
                       seconds=seconds, previous_node=move.get("from"), **where)

    def _once(self, store: Store, tag: tuple, kind: str, message: str, **fields) -> None:
        if tag not in self.noted:
            self.noted.add(tag)
            events.record(store, kind, message, **fields)


def report_due(written: dict, report: dict, age: float) -> bool:
    """Is `report` worth writing over the one `written` `age` seconds ago? (pure)"""
    if any(written.get(f) != report.get(f) for f in STATUS_FIELDS) or age >= STATUS_MAX_AGE_S:
        return True
    return age >= STATUS_REFRESH_S and _usage_moved(written, report)


def _usage_moved(a: dict, b: dict) -> bool:
    cpu_a, cpu_b, mem_a, mem_b = a.get("cpu_percent"), b.get("cpu_percent"), a.get("memory_mb"), b.get("memory_mb")
    if (cpu_a is None) != (cpu_b is None) or (mem_a is None) != (mem_b is None):
        return True
    if cpu_a is not None and abs(cpu_b - cpu_a) >= CPU_MOVED_POINTS:
        return True
    return mem_a is not None and abs(mem_b - mem_a) >= max(MEMORY_MOVED[0], MEMORY_MOVED[1] * mem_a)
