"""The node agent's container loop on one machine: read desired, read podman, converge, report.

`Agent.step(desired)` is one reconcile pass: it lists this machine's vcapp containers,
checks their health, asks `reconcile` what to do, does it, and returns the status reports
(the values for /vc/status/<node>/<app>/<instance>):
    {"node": "home-1", "app": "blog", "instance": "0", "release": "3",
     "container": "vc-blog-0-r3", "state": "running",     # running | exited | created | missing | failed
     "health": "healthy",                                 # starting | healthy | unhealthy | -
     "restarts": 2, "host_port": 20001,                   # where the router sends traffic
     "cpu_percent": 1.5, "memory_mb": 3.2, "memory_limit_mb": 64,
     "started_at": 1700000000.0, "message": "HTTP 200 from /healthz", "updated_at": 1700000003.2,
     "promotion": {"release": "4", "outcome": "refused",   # only while a newer release was
                   "check": "HTTP 500 from /healthz"}}     # refused here (runtime/replace.py)
A container leaves without losing a request: once its successor is healthy (or the instance
is no longer assigned here), the `handoff` hook publishes the instance's new report and
returns when the routers have stopped sending to the old container; then the old one is
retired on a thread of its own: SIGTERM, its kill_timeout for requests in flight, SIGKILL.
Reconcile does not see a retiring container, so it is neither restarted nor removed twice.
The node's runtime loop (vcapp/node/runtime_loop.py) calls `step` every LOOP_INTERVAL_S
with what etcd assigns to this machine, and writes each report. `specs_from` reads
{"assignments": [<assignment JSON>, ...], "secrets": {"<app>": {"NAME": "value"}}}.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from runtime import health, usage
from runtime.book import Book
from runtime.podman import RETIRING_MARK, Container, PodmanDriver, PodmanError, retiring_name
from runtime.reconcile import Action, Create, Observed, Reforward, Remove, Replace, Restart, Wait, reconcile
from runtime.replace import Promotion, replace
from runtime.spec import InstanceSpec, SpecError

log = logging.getLogger("vcapp.runtime")

# Health checks and crash detection run this often; with a 1 s back-off first step, a crashed
# instance is back within ~2 s, and podman is asked about twice a second at most.
LOOP_INTERVAL_S = 1.0
# A new instance is probed this often, from its start until it first passes (or its start grace
# ends), on a thread of its own, so that its first healthy report waits for no pass: `on_ready`
# asks the loop for one at once. Replacing one already does this (runtime/replace.py).
FIRST_CHECK_EVERY_S = 0.1
# A `podman ps` costs ~60 ms of CPU (every 5 s, 1.2 % of a core: most of an idle machine's
# runtime share). A pass trusts the last answer for this long while it still holds: nothing
# done since, no retirement ended, and every container it saw running still has its process
# (so a crash, a kill or a `podman rm` of one is seen at the next pass). What else happens
# outside vcapp (a container with its labels started by hand) is seen within this long.
FULL_LOOK_EVERY_S = 30.0


class PrepareError(RuntimeError):
    """The `prepare` hook could not make an instance's volumes ready; the message says why."""


# Called before an instance with volumes starts: volume name -> host path to bind-mount.
Prepare = Callable[[InstanceSpec], dict[str, str]]
# Called before a serving container stops: app/instance, the report that now stands for it
# and, when the instance leaves this machine (report None), the old container's host port;
# returns once traffic has moved.
Handoff = Callable[[str, dict | None, int | None], None]
# Called (from another thread) when a new instance first passes its check: run a pass soon.
Ready = Callable[[], None]


class Agent:
    def __init__(self, driver: PodmanDriver, node: str, book_path: Path | None = None,
                 prepare: Prepare | None = None, handoff: Handoff | None = None, on_ready: Ready | None = None):
        self.driver = driver
        self.prepare = prepare
        self.handoff = handoff
        self.on_ready = on_ready
        self.retiring: set[str] = set()  # names of containers being stopped on their own thread
        self.retiring_lock = threading.Lock()
        self.ports_held: set[int] = set()  # host ports of every container, retiring ones too
        self.swept = True  # False: a container went away since networks were last tidied
        self.last_specs: dict[str, InstanceSpec] = {}  # the previous pass's, for handovers
        self.node = node
        self.book_path = book_path
        self.tracker = health.HealthTracker()
        self.cpu_samples: dict[str, tuple[int, float]] = {}
        self.looked: list[Container] | None = None  # podman's last answer (see FULL_LOOK_EVERY_S)
        self.looked_at = 0.0
        self.retired = self.looked_retired = 0  # retirements ended: one makes the last answer old

    def step(self, desired: list[InstanceSpec], errors: dict[str, str] | None = None,
             hold: set[str] | frozenset[str] = frozenset()) -> dict[str, dict]:
        """One pass. `errors`: app/instance -> why its assignment could not become a spec.
        `hold`: instances moving to another machine that keep running here, as they are,
        until their successor there serves (a handover)."""
        now = time.time()
        desired = desired + [self.last_specs[k] for k in sorted(hold)
                             if k in self.last_specs and k not in {s.key for s in desired}]
        self.last_specs = {s.key: s for s in desired}
        specs = {s.key: s for s in desired}
        containers = self._visible(every := self._look())
        for leftover in [c for c in containers if RETIRING_MARK in c.name]:
            self._retire(leftover)  # a retirement the last daemon did not finish: never this instance
            containers.remove(leftover)
        self.ports_held = {c.host_port for c in every if c.host_port}
        observed = [self._observe(c, specs.get(c.key), now) for c in containers]
        book = Book.load(self.book_path)
        notes: dict[str, str] = {}
        actions = reconcile(desired, observed, book, now)
        for action in actions:
            notes.update(self._apply(action, book, containers, specs))
        book.forget_except(set(specs))
        book.save(self.book_path)
        if any(not isinstance(a, Wait) for a in actions) or not self.swept:
            every = self._look(fresh=True)
            containers = self._visible(every)
            if any(isinstance(a, (Remove, Replace)) for a in actions) or not self.swept:
                self.swept = True  # before: a retirement ending meanwhile asks for the next sweep
                self.driver.remove_unused_networks({c.app for c in every} | {s.app for s in desired})
        self.tracker.forget_except({c.id for c in containers})
        reports = {k: self._report(s, containers, book, notes.get(k), now) for k, s in specs.items()}
        for key, why in (errors or {}).items():
            app, _, inst = key.partition("/")
            reports[key] = {"node": self.node, "app": app, "instance": inst, "state": "failed", "health": "-",
                            "message": why, "updated_at": now}
        return reports

    def _look(self, fresh: bool = False) -> list[Container]:
        """Every vcapp container, from podman, or its last answer while that still holds."""
        with self.retiring_lock:
            retired = self.retired
        held = self.looked is not None and not fresh and retired == self.looked_retired \
            and time.monotonic() - self.looked_at < FULL_LOOK_EVERY_S \
            and all(c.pid > 0 and os.path.exists(f"/proc/{c.pid}") for c in self.looked if c.running)
        if not held:
            self.looked, self.looked_at, self.looked_retired = self.driver.list(), time.monotonic(), retired
        return self.looked

    def _visible(self, containers: list[Container]) -> list[Container]:
        with self.retiring_lock:
            return [c for c in containers if c.name not in self.retiring]

    @property
    def busy_retiring(self) -> bool:
        with self.retiring_lock:
            return bool(self.retiring)

    # ---- observe -----------------------------------------------------------------------

    def _observe(self, c: Container, spec: InstanceSpec | None, now: float) -> Observed:
        if not c.running or spec is None or spec.release != c.release:
            rec = self.tracker.records.get(c.id)
            return Observed(c, "starting" if rec is None else health.state(rec, spec.health if spec else
                                                                           health.HealthCheck(), now))
        rec = self.tracker.check(c.id, c.started_at, spec.health, c.host_port if spec.port else None)
        return Observed(c, health.state(rec, spec.health, now), rec.failures, rec.forwarded)

    # ---- act ---------------------------------------------------------------------------

    def _apply(self, action: Action, book: Book, containers: list[Container],
               specs: dict[str, InstanceSpec]) -> dict[str, str]:
        try:
            return self._do(action, book, containers, specs)
        except (PodmanError, PrepareError, OSError) as e:
            key = action.spec.key if isinstance(action, Create) else getattr(action, "key", "")
            return {key: str(e)}

    def _do(self, action: Action, book: Book, containers: list[Container],
            specs: dict[str, InstanceSpec]) -> dict[str, str]:
        if isinstance(action, Create):
            port = self._take_port()
            self.driver.run(action.spec, port if action.spec.port else None, self._binds(action.spec))
            if self.on_ready:
                threading.Thread(target=self._first_check, args=(action.spec, port if action.spec.port else None),
                                 name=f"first-check-{action.spec.container_name}", daemon=True).start()
            return {action.spec.key: f"started: {action.reason}"}
        if isinstance(action, Restart):
            if (spec := specs.get(action.key)) is not None and spec.volumes:
                # The container binds its volumes' mount points, and what was mounted there
                # may be gone: a reboot or self-fencing kills the weed mounts. Started on the
                # bare directory, the app would see an empty volume and its writes would be
                # lost when it moves. `prepare` mounts them again (at the same paths) and takes
                # the writer key, or raises and the container stays stopped.
                self._binds(spec)
            (self.driver.restart if action.running else self.driver.start)(action.name)
            book.restarts[action.key] = book.restarts.get(action.key, 0) + 1
            book.streak[action.key] = action.streak
            return {action.key: f"restarted: {action.reason}"}
        if isinstance(action, Remove):
            gone = next((c for c in containers if c.name == action.name), None)
            if gone is None or not gone.running or action.key in specs:
                self.driver.remove(action.name)  # serves nobody (or a leftover of a replace)
                return {}
            if self.handoff and gone.host_port:  # routers send only to published ports
                self.handoff(action.key, None, gone.host_port)
            self._retire(gone)
            return {}
        if isinstance(action, Reforward):
            # if the reload does not help, its failing checks restart it like any unhealthy instance
            log.warning("%s: %s; reloading its network rules", action.name, action.reason)
            self.driver.reload_network(action.name)
            return {action.key: f"port rules written again: {action.reason}"}
        if isinstance(action, Replace):
            port = self._take_port()
            result = replace(self.driver, action.old, action.spec, port, binds=self._binds(action.spec),
                             on_promoted=lambda: self._promoted(action.spec, book), retire=self._retire)
            if result.promoted:
                book.failed.pop(action.spec.key, None)
                book.streak.pop(action.spec.key, None)
            else:
                book.failed[action.spec.key] = {"release": result.release, "reason": result.check,
                                                "previous": result.previous, "at": time.time()}
            return {action.spec.key: result.message}
        return {action.key: action.reason}

    def _first_check(self, spec: InstanceSpec, port: int | None) -> None:
        """Probe a new instance until it first passes, then ask for a pass (which checks it
        again and reports it healthy). Gives up silently when its start grace ends: the
        passes report it unhealthy then."""
        end = time.monotonic() + spec.health.start_grace_s
        while time.monotonic() < end:
            if health.probe(spec.health, port)[0]:
                self.on_ready()
                return
            time.sleep(FIRST_CHECK_EVERY_S)

    def _take_port(self) -> int:
        port = self.driver.pick_host_port(self.ports_held)
        self.ports_held.add(port)
        return port

    def _promoted(self, spec: InstanceSpec, book: Book) -> None:
        """The new container passed its check: it counts as healthy from now on (no second
        'starting' report), and traffic moves to it before the old one stops."""
        now = time.time()
        containers = self.driver.list()
        new = next((c for c in containers if c.name == spec.container_name), None)
        if new is None:
            return
        rec = self.tracker.record(new.id, new.started_at)
        rec.last_ok = rec.passed_once = True
        rec.failures = 0
        if self.handoff and spec.port:  # routers send only to instances with a port
            self.handoff(spec.key, self._report(spec, self._visible(containers), book, None, now), None)

    def _retire(self, old: Container) -> None:
        """Stop `old` on a thread of its own: SIGTERM, its drain time, SIGKILL, remove. Renamed
        first (podman.RETIRING_MARK), so its name is free for a successor of the same release."""
        name = old.name
        if RETIRING_MARK not in name:
            try:
                self.driver.rename(name, new := retiring_name(name))
                name = new
                self.looked = None  # podman's last answer names it as it was
            except PodmanError as e:  # it drains under its name; a successor waits for that
                log.warning("%s: %s; it drains under its own name", name, e)
        with self.retiring_lock:
            self.retiring.add(name)

        def work() -> None:
            try:
                self.driver.retire(name)
            except PodmanError as e:
                log.warning("%s: %s; the next pass removes it", name, e)
            finally:
                with self.retiring_lock:
                    self.retiring.discard(name)
                    self.retired += 1
                self.swept = False  # its app's network may be unused now

        threading.Thread(target=work, name=f"retire-{name}", daemon=True).start()

    def _binds(self, spec: InstanceSpec) -> dict[str, str]:
        if not spec.volumes:
            return {}
        if self.prepare is None:
            raise PrepareError(f"{spec.key} has volumes but this runtime has no storage to mount them from")
        return self.prepare(spec)

    # ---- report ------------------------------------------------------------------------

    def _report(self, spec: InstanceSpec, containers: list[Container], book: Book, note: str | None,
                now: float) -> dict:
        mine = [c for c in containers if c.key == spec.key]
        c = next((c for c in mine if c.release == spec.release), None) or next(
            (c for c in mine if c.running), None)
        rep = {"node": self.node, "app": spec.app, "instance": spec.instance, "release": spec.release,
               "container": None, "state": "missing", "health": "-", "restarts": book.restarts.get(spec.key, 0),
               "host_port": None, "started_at": None, "message": note or "", "updated_at": now}
        if c is None:
            return rep
        rec = self.tracker.records.get(c.id)
        rep.update(container=c.name, release=c.release, state=c.state, host_port=c.host_port,
                   started_at=c.started_at or None,
                   health=health.state(rec, spec.health, now) if c.running else "-")
        if not rep["message"] and rec is not None:
            rep["message"] = rec.message
        refused = book.failed.get(spec.key)
        if refused:
            rep["promotion"] = {"release": str(refused.get("release")), "outcome": Promotion.REFUSED.value,
                                "check": refused.get("reason") or ""}
        rep.update(self._usage(c, now))
        return rep

    def _usage(self, c: Container, now: float) -> dict:
        u = usage.read(c.pid) if c.running else None
        if u is None:
            return {"cpu_percent": None, "memory_mb": None, "memory_limit_mb": None}
        prev = self.cpu_samples.get(c.id)
        self.cpu_samples[c.id] = (u.cpu_ns, now)
        pct = None
        if prev and now > prev[1]:
            pct = round(100.0 * (u.cpu_ns - prev[0]) / 1e9 / (now - prev[1]), 2)
        return {"cpu_percent": pct, "memory_mb": round(u.memory_bytes / 2**20, 1),
                "memory_limit_mb": round(u.memory_limit_bytes / 2**20) if u.memory_limit_bytes else None}

    # ---- logs --------------------------------------------------------------------------

    def logs(self, app: str, instance: str, follow: bool = False, tail: int | None = None,
             since: float | None = None) -> Iterator[str]:
        """Log lines of an instance (its current container: running, else the newest); `since`:
        unix seconds, older lines left out."""
        mine = [c for c in self.driver.list() if c.app == app and c.instance == instance]
        if not mine:
            raise PodmanError(f"no container for {app}/{instance} on {self.node}; `vcapp ps {app}` shows where it runs")
        c = max(mine, key=lambda c: (c.running, c.started_at))
        return self.driver.logs(c.name, follow=follow, tail=tail, since=since)


def specs_from(doc: dict, node: str | None = None) -> tuple[list[InstanceSpec], dict[str, str]]:
    """Specs (and per-instance errors) from {"assignments": [...], "secrets": {...}}."""
    specs, errors = [], {}
    for rec in doc.get("assignments", []):
        if node and rec.get("node") not in (None, node):
            continue
        try:
            specs.append(InstanceSpec.from_assignment(rec, doc.get("secrets", {}).get(rec.get("app"), {})))
        except SpecError as e:
            errors[f"{rec.get('app')}/{rec.get('instance')}"] = str(e)
    return specs, errors
