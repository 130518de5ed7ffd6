"""Node loop: this machine's copy of every app repository, kept up to date in the background.

Every SYNC_EVERY_S it reads /vc/repos/* (vcapp/state/reposync.py) and, on a worker thread (a
fetch takes seconds; the daemon's tick must not wait), catches up each repository this
machine does not hold yet: fetched from a machine that does, then listed as a holder. So a
push is on every live machine seconds after it lands, and survives the machine that took it.
The same worker removes this machine's repositories of destroyed apps (`reposync.prune`), so
a destroyed app's history is gone from every live machine seconds after the destroy.
"""

from __future__ import annotations

import logging

from gitserver.repos import RepoError, repo_path
from vcapp.errors import VcError
from vcapp.machine import cluster_key
from vcapp.node.harness import Every, Job
from vcapp.state import apps as app_records
from vcapp.state import keys, reposync
from vcapp.state.store import StoreUnavailable, per_thread_store

log = logging.getLogger("vcapp.node")

SYNC_EVERY_S = 3.0


class RepoSyncLoop:
    name = "repos"

    def __init__(self, ctx) -> None:
        self.root = ctx.base / "git"
        self.node = ctx.cfg.name
        self.endpoints = ctx.cfg.store_endpoints()
        self.store = per_thread_store(lambda: self.endpoints)
        self.every = Every(SYNC_EVERY_S)
        self.worker = Job("vcapp-repos")

    def step(self, ctx) -> None:
        self.endpoints = ctx.cfg.store_endpoints()
        if self.worker.running() or not self.every.due():
            return
        behind = reposync.behind(ctx.store, self.node)
        apps = app_records.generations(ctx.store)
        if behind or self._stale(apps):
            self.worker.start(self._sync, behind)

    def _stale(self, apps: dict[str, int]) -> bool:
        """Whether this machine holds a repository `reposync.prune` removes: its app is gone, or
        was destroyed and made again (`apps`: each app's generation)."""
        local = {p.name[: -len(".git")] for p in self.root.glob("*.git")} if self.root.is_dir() else set()
        return bool(local - set(apps)) or any(reposync.generation(self.root, a) not in (None, apps[a])
                                              for a in local & set(apps))

    def _sync(self, apps: list[str]) -> None:
        store = self.store()
        try:
            current = app_records.generations(store)
            for app in reposync.prune(self.root, current):
                log.info("repository of %s removed: its app was destroyed", app)
        except (OSError, StoreUnavailable) as e:
            log.info("repository cleanup skipped: %s", e)
            return
        try:
            secret = reposync.sync_secret(cluster_key())
            peers = reposync.live_apis(store)
        except (OSError, StoreUnavailable) as e:
            log.info("repository sync skipped: %s", e)
            return
        for app in apps:
            try:
                if not (repo_path(self.root, app) / "HEAD").is_file():
                    entry = store.get(keys.app(app))
                    if entry is None:
                        continue  # the app was destroyed; its record goes with it
                    reposync.fresh_repo(self.root, app, entry.create_revision)
                reposync.catch_up(store, app, self.root, self.node, peers, secret)
            except (RepoError, VcError, StoreUnavailable) as e:
                log.info("repository of %s not caught up yet: %s", app, e)
