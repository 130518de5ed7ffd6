"""Leader loop: scheduled backups (vcapp/state/backups.py).

Observe: the schedule, and this cluster's backups at its target, a directory or a bucket
(vcapp/deploy/backup_target.py; their names say when they were made). Decide (`plan`, pure):
make one when the newest is `every_s` old or there is none; else delete the oldest beyond
`keep` (so a failed run never costs a kept backup). Act, on a worker thread (a bucket is a
network call away; a backup reads every image and volume: minutes, not a tick): the backup
written here and kept at the target, its outcome in /vc/backups/status and the history.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from vcapp import machine
from vcapp.deploy import backup, backup_target
from vcapp.errors import VcError
from vcapp.node.harness import Every, Job
from vcapp.state import backups, events, membership
from vcapp.state.store import Store, StoreUnavailable

log = logging.getLogger("vcapp.node")

CHECK_EVERY_S = 30.0
RETRY_AFTER_S = 600.0  # a failed backup is tried again this much later, not at every check


@dataclass(frozen=True)
class Plan:
    make: bool = False
    delete: list[str] = field(default_factory=list)


def plan(schedule: dict, held: dict[str, float], now: float) -> Plan:
    """`held`: backup file name -> when it was made."""
    newest = max(held.values(), default=None)
    if newest is None or now - newest >= schedule["every_s"]:
        return Plan(make=True)  # the old ones go at the next check, once the new one exists
    by_age = sorted(held, key=lambda n: held[n], reverse=True)
    return Plan(delete=by_age[max(1, int(schedule["keep"])):])


class BackupLoop:
    name = "backup"

    def __init__(self, ctx) -> None:
        self.check = Every(CHECK_EVERY_S)
        self.job = Job("vcapp-backup")
        self.quiet_until = 0.0

    def step(self, ctx) -> None:
        if self.job.running() or time.monotonic() < self.quiet_until or not self.check.due():
            return
        try:
            schedule = backups.schedule(ctx.store)
            cluster = membership.cluster_record(ctx.store).get("name", "")
        except StoreUnavailable:
            return
        if schedule:
            self.job.start(self._run, Store(ctx.store.endpoints), ctx.cfg, schedule, cluster)

    def _run(self, store: Store, cfg, schedule: dict, cluster: str) -> None:
        """Observe the target, then make a backup or delete the ones beyond `keep` (a worker
        thread: listing a bucket is a network call, a backup takes minutes)."""
        try:
            todo = plan(schedule, backup_target.held(schedule, cluster), time.time())
            for name in todo.delete:
                backup_target.delete(schedule, name)
                log.info("backup %s deleted from %s (%d are kept)", name, backup_target.describe(schedule),
                         schedule["keep"])
            if todo.make:
                self._make(store, cfg, schedule)
        except (VcError, OSError) as e:
            why = e.message if isinstance(e, VcError) else f"{type(e).__name__}: {e}"
            log.warning("scheduled backup failed (tried again in %.0f min): %s", RETRY_AFTER_S / 60, why)
            _record(store, False, cfg.name, error=why)
            self.quiet_until = time.monotonic() + RETRY_AFTER_S

    def _make(self, store: Store, cfg, schedule: dict) -> None:
        work = Path(tempfile.mkdtemp(prefix="vcapp-backup-run-", dir=machine.data_dir()))
        try:
            path, made = backup.create(store, cfg, schedule["recipient"], work, lambda line: log.info("backup: %s", line))
            size = path.stat().st_size
            backup_target.keep(schedule, path)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _record(store, True, cfg.name, path.name, size)
        events.record(store, "backup", f"backup {path.name} written to {backup_target.describe(schedule)} by "
                      f"{cfg.name} ({size / 1e6:.1f} MB, {len(made.apps)} apps, {len(made.volumes)} volumes)")


def _record(store: Store, ok: bool, machine: str, name: str = "", size: int = 0, error: str = "") -> None:
    try:
        backups.record_run(store, ok, machine, name, size, error)
    except StoreUnavailable:
        log.warning("the outcome of the scheduled backup could not be recorded: etcd unreachable")
