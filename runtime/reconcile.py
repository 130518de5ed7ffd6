"""The pure reconcile: desired instances + what podman has -> the actions that converge them.

No I/O: the agent gathers `Observed` containers (podman state plus the agent's own health
checks) and the `Book`, calls `reconcile`, and applies the actions it gets back. Running it
twice on the same input gives the same actions, and a crash between two actions is
harmless: the next step sees the new actual state and carries on.

Per instance (app/instance):
- nothing runs            -> Create
- same release, running   -> nothing, or Restart after UNHEALTHY_RESTART_AFTER failed checks
- same release, exited    -> Restart once its back-off has passed, else Wait
- older release running   -> Replace (zero downtime: new one healthy first, then old stops),
                             unless this release already failed its check (then Wait, old serves)
- two releases present    -> the step after an interrupted replace: keep the healthy new one
                             or drop the new one and let the next step replace again
- container not desired   -> Remove
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.book import Book
from runtime.podman import Container
from runtime.spec import InstanceSpec

# Crash back-off: 1 s, 2 s, 4 s ... capped at 60 s, like Kubernetes' CrashLoopBackOff
# (there 10 s to 5 min; our apps are small and a quick first retry hides most one-off crashes).
RESTART_BACKOFF_FIRST_S = 1.0
RESTART_BACKOFF_MAX_S = 60.0
# A run that lasted this long was not part of a crash loop: the back-off starts over.
BACKOFF_RESET_AFTER_S = 60.0
# Consecutive failed health checks of a running container before the agent restarts it;
# three rides out one slow request or a GC pause.
UNHEALTHY_RESTART_AFTER = 3


@dataclass(frozen=True)
class Observed:
    container: Container
    health: str = "starting"   # starting | healthy | unhealthy (see runtime/health.py)
    failures: int = 0          # consecutive failed checks
    forwarded: bool = True     # False: its published port is held by podman but not forwarded to it


@dataclass(frozen=True)
class Create:
    spec: InstanceSpec
    reason: str


@dataclass(frozen=True)
class Restart:
    name: str
    key: str
    streak: int      # restarts in the current crash loop, after this one
    running: bool    # True: restart a running (unhealthy) container; False: start an exited one
    reason: str


@dataclass(frozen=True)
class Reforward:
    """Write a running container's port-forwarding rules again; the app keeps running."""
    name: str
    key: str
    reason: str


@dataclass(frozen=True)
class Remove:
    name: str
    key: str
    reason: str


@dataclass(frozen=True)
class Replace:
    old: Container
    spec: InstanceSpec
    reason: str


@dataclass(frozen=True)
class Wait:
    key: str
    reason: str


Action = Create | Restart | Reforward | Remove | Replace | Wait


def backoff_s(streak: int) -> float:
    """Seconds to wait before restart number `streak + 1` of a crash loop."""
    return min(RESTART_BACKOFF_FIRST_S * (2 ** streak), RESTART_BACKOFF_MAX_S)


def reconcile(desired: list[InstanceSpec], actual: list[Observed], book: Book, now: float) -> list[Action]:
    by_key: dict[str, list[Observed]] = {}
    for o in actual:
        by_key.setdefault(o.container.key, []).append(o)
    want = {s.key: s for s in desired}
    actions: list[Action] = []
    for key in sorted(by_key.keys() - want.keys()):
        for o in by_key[key]:
            actions.append(Remove(o.container.name, key, "no longer assigned to this machine"))
    for key in sorted(want):
        actions += _converge(want[key], by_key.get(key, []), book, now)
    # Actions run one after the other. An instance with volumes takes seconds to start (the
    # volumes mounted, their data findable, the storage ready for writes after a machine
    # loss): the others, moved here by the same failover, start first.
    return sorted(actions, key=lambda a: isinstance(a, Create) and bool(a.spec.volumes))


def _converge(spec: InstanceSpec, obs: list[Observed], book: Book, now: float) -> list[Action]:
    current = [o for o in obs if o.container.release == spec.release]
    older = sorted((o for o in obs if o.container.release != spec.release), key=lambda o: not o.container.running)
    if current:
        return _after_replace(spec, current[0], older) or _keep_running(spec, current[0], book, now)
    serving = [o for o in older if o.container.running]
    failed = book.failed.get(spec.key)
    if serving and failed and failed.get("release") == spec.release:
        return [Wait(spec.key, f"release {spec.release} failed its health check: {failed.get('reason')}; "
                               f"release {serving[0].container.release} keeps serving")]
    if serving:
        extra = [Remove(o.container.name, spec.key, "superseded") for o in older if o is not serving[0]]
        return extra + [Replace(serving[0].container, spec, f"new release {spec.release}")]
    removes = [Remove(o.container.name, spec.key, f"old release {o.container.release}, not running") for o in older]
    return removes + [Create(spec, "assigned to this machine")]


def _after_replace(spec: InstanceSpec, cur: Observed, older: list[Observed]) -> list[Action]:
    if not older:
        return []
    if cur.container.running and cur.health == "healthy" or not any(o.container.running for o in older):
        return [Remove(o.container.name, spec.key, f"release {spec.release} took over") for o in older]
    return [Remove(cur.container.name, spec.key, "a replace was interrupted; it starts over")]


def _keep_running(spec: InstanceSpec, o: Observed, book: Book, now: float) -> list[Action]:
    c = o.container
    streak = book.streak.get(spec.key, 0)
    if c.running:
        if o.health == "unhealthy" and o.failures >= UNHEALTHY_RESTART_AFTER:
            return [Restart(c.name, spec.key, streak + 1, True,
                            f"failed {o.failures} health checks in a row")]
        if not o.forwarded:
            return [Reforward(c.name, spec.key, "its port is held by podman but not forwarded to the container")]
        return []
    if c.started_at and c.exited_at and c.exited_at - c.started_at >= BACKOFF_RESET_AFTER_S:
        streak = 0
    why = f"exited with code {c.exit_code}" if c.exited_at else f"is {c.state}"
    delay = backoff_s(streak) if c.exited_at else 0.0
    if now >= c.exited_at + delay:
        return [Restart(c.name, spec.key, streak + 1, False, f"{why}; restart after {delay:g}s back-off")]
    return [Wait(spec.key, f"{why}; restarting in {c.exited_at + delay - now:.0f}s (back-off {delay:g}s)")]
