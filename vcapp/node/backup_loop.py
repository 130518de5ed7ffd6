"""Leader loop: scheduled backups (vcapp/state/backups.py).

Observe: the schedule and the backups of this cluster in its directory (their names say when
they were made). Decide (`plan`, pure): make one when the newest is `every_s` old or there is
none; else delete the oldest beyond `keep` (so a failed run never costs a backup kept). Act: the backup is written on a
worker thread (it reads every image and volume: minutes, not a tick), its outcome in
/vc/backups/status and the history.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from vcapp.deploy import backup
from vcapp.errors import VcError
from vcapp.node.harness import Every, Job
from vcapp.state import backups, events, membership
from vcapp.state.store import Store, StoreUnavailable

log = logging.getLogger("vcapp.node")

CHECK_EVERY_S = 30.0


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


def held_backups(where: Path, cluster: str) -> dict[str, float]:
    out = {}
    for entry in os.scandir(where) if where.is_dir() else []:
        at = backups.made_at(entry.name)
        if at is not None and entry.name.startswith(f"vcapp-backup-{cluster}-") and entry.is_file():
            out[entry.name] = at
    return out


class BackupLoop:
    name = "backup"

    def __init__(self, ctx) -> None:
        self.check = Every(CHECK_EVERY_S)
        self.job = Job("vcapp-backup")

    def step(self, ctx) -> None:
        if self.job.running() or not self.check.due():
            return
        try:
            schedule = backups.schedule(ctx.store)
            cluster = membership.cluster_record(ctx.store).get("name", "")
        except StoreUnavailable:
            return
        if not schedule:
            return
        where = Path(schedule["dir"])
        todo = plan(schedule, held_backups(where, cluster), time.time())
        for name in todo.delete:
            (where / name).unlink(missing_ok=True)
            log.info("backup %s deleted (%d are kept)", name, schedule["keep"])
        if todo.make:
            self.job.start(self._make, Store(ctx.store.endpoints), ctx.cfg, schedule)

    def _make(self, store: Store, cfg, schedule: dict) -> None:
        where = Path(schedule["dir"])
        try:
            where.mkdir(parents=True, exist_ok=True)
            path, made = backup.create(store, cfg, schedule["recipient"], where, lambda line: log.info("backup: %s", line))
        except (VcError, OSError) as e:
            why = e.message if isinstance(e, VcError) else f"{where}: {e.strerror or e}"
            log.warning("scheduled backup failed: %s", why)
            _record(store, False, cfg.name, error=why)
            return
        size = path.stat().st_size
        _record(store, True, cfg.name, path.name, size)
        events.record(store, "backup", f"backup {path.name} written on {cfg.name} ({size / 1e6:.1f} MB, "
                      f"{len(made.apps)} apps, {len(made.volumes)} volumes)")


def _record(store: Store, ok: bool, machine: str, name: str = "", size: int = 0, error: str = "") -> None:
    try:
        backups.record_run(store, ok, machine, name, size, error)
    except StoreUnavailable:
        log.warning("the outcome of the scheduled backup could not be recorded: etcd unreachable")
