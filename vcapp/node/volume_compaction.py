"""Keeping the volumes of this machine's instances few-chunked (storage/compaction.py says why).

The runtime pass calls `Compactor.step` with the instances it runs; every COMPACT_EVERY_S the
compactor looks at the files of each volume mounted here for them (observe: the local filer's
listing, at most SCAN_LIMIT entries a look, going on where the last look stopped), plans the
rewrites (decide: storage.compaction.plan) and, when there are some, pauses the app's
containers on this machine, rewrites through the mount and resumes them (act). It runs on the
runtime pass's thread, so no health check, start or stop of the agent meets a paused container,
and not at all while a release command or a one-off (`vcapp run`) runs here: those write the
volume from a container of their own.

Self-fencing (runtime_loop.py's watchdog, on its own thread) may fire during a compaction:
it kills the volume's weed mount first, which fails the rewrite (the content is the file's own
either way); podman refuses to kill a paused container, but a paused one writes nothing, and
the watchdog kills it at its next look once the compaction has resumed it (0.2 s), its mount
already gone.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import urllib3

from runtime.podman import PodmanDriver, PodmanError
from runtime.spec import InstanceSpec
from storage import compaction, mount
from storage.plan import FILER_PORT
from storage.volumes import VOLUMES_ROOT
from vcapp.deploy import release_phase
from vcapp.state import volumes

log = logging.getLogger("vcapp.runtime")

COMPACT_EVERY_S = 30.0
SCAN_LIMIT = 2000  # entries listed per volume per look; a larger volume is covered over several


class Compactor:
    def __init__(self, driver: PodmanDriver, base: Path, filer_addr: str):
        self.driver, self.base = driver, Path(base)
        self.filer_url = f"http://{filer_addr}:{FILER_PORT}"
        self.http = urllib3.PoolManager(maxsize=1)
        self.walks: dict[tuple[str, str], compaction.Walk] = {}
        self.next_at = time.monotonic() + COMPACT_EVERY_S
        self.recovered = False

    def step(self, specs: list[InstanceSpec]) -> None:
        if not self.recovered:
            self._resume_leftovers()
        if time.monotonic() < self.next_at:
            return
        self.next_at = time.monotonic() + COMPACT_EVERY_S
        wanted = sorted({(s.app, v.source) for s in specs for v in s.volumes})
        self.walks = {k: w for k, w in self.walks.items() if k in wanted}
        for app, source in wanted:
            point = volumes.mount_path(self.base, app, source)
            entry = mount.mount_entry(point)
            if entry is None or entry["fstype"] not in mount.FUSE_TYPES:
                continue
            root = f"{VOLUMES_ROOT}/{app}/{source}"
            try:
                files = compaction.scan(self.http, self.filer_url, root,
                                        self.walks.setdefault((app, source), compaction.Walk()), SCAN_LIMIT)
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as e:
                log.info("volume %s/%s: not compacted this time, the filer's listing failed: %s", app, source, e)
                self.walks.pop((app, source), None)
                continue
            if jobs := compaction.plan(files, root):
                self._compact(app, source, point, jobs)

    def _compact(self, app: str, source: str, point: Path, jobs: list[compaction.Rewrite]) -> None:
        """Pause every container of `app` here, rewrite, resume them (whatever happened)."""
        if self._release_phase_running():
            return
        targets = [c.name for c in self.driver.list() if c.app == app and c.running]
        began, paused, done = time.monotonic(), [], []
        try:
            for name in targets:
                self.driver.pause(name)
                paused.append(name)
            for job in jobs:
                try:
                    done.append((job, compaction.rewrite(point, job)))
                except FileNotFoundError:
                    continue  # deleted since the listing
        except (PodmanError, OSError) as e:
            log.warning("volume %s/%s: compaction stopped: %s", app, source, e)
        finally:
            for name in paused:
                self._resume(name)
        held = time.monotonic() - began
        for job, nbytes in done:
            log.info("volume %s/%s: %s compacted from %d chunks (%d bytes rewritten in place); %s paused %.2fs",
                     app, source, job.path, job.chunks, nbytes, ", ".join(paused) or "nothing", held)

    def _resume(self, name: str) -> None:
        for attempt in (1, 2):
            try:
                self.driver.unpause(name)
                return
            except PodmanError as e:
                if attempt == 2:
                    log.error("%s stays paused: %s (the next pass resumes it)", name, e)
                    self.recovered = False

    def _resume_leftovers(self) -> None:
        """Containers this machine paused and never resumed (the daemon stopped in between)."""
        try:
            for c in self.driver.list():
                if c.state == "paused":
                    log.warning("%s was left paused by a compaction; resuming it", c.name)
                    self.driver.unpause(c.name)
            self.recovered = True
        except PodmanError as e:
            log.warning("cannot resume paused containers yet: %s", e)

    def _release_phase_running(self) -> bool:
        proc = self.driver.shell.run(["podman", "ps", "--filter", f"label={release_phase.LABEL}",
                                      "--format", "{{.Names}}"])
        return proc.returncode != 0 or bool(proc.stdout.strip())
