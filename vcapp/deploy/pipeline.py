"""The git-push deploy pipeline: the `on_push` hook the git endpoint calls for main/master.

    build record /vc/builds/<app>/<n> "building" (state/builds.py; finished whatever happens below,
      with the push's whole log: `vcapp builds APP`, `vcapp builds log APP N`)
    vcapp.toml (appconfig: refused with line and field, nothing changes)
      -> build with builder/ here or on the machine placer.build_machine picks (remote_build.py),
         every line streamed to `git push`
         (a stack it lacks: pulled from the cluster registries, or made once: stackshare.py)
      -> push to this machine's registry (<addr>:5000, node/registry_loop.py)
      -> record /vc/releases/<app>/<n> (state/releases.py)
      -> the release phase, if the Procfile or vcapp.toml has `release:` (release_phase.py):
         refused on a non-zero exit, nothing changes for what serves
      -> apps.set_release
      -> wait (bounded) until every instance runs vN healthy per /vc/status: "vN live"
      -> copy to IMAGE_COPIES other live machines' registries (other sites first), by the
         machine that built it (copy_release_image): "vN durable", the machines that hold it
      -> "released vN" + https://<app>.<domain>
    or, if vN fails its health check: the app is set back to the release that served before,
    vN is recorded as failed, and the push is refused (main keeps pointing at what serves).

The build runs where placer.build_machine says (the receiver if it has a core and 1 GB
unbooked, else the live machine with the most CPU left): elsewhere, the source goes there as a tarball and the log
comes back line by line (vcapp/deploy/remote_build.py). The release records the image's full
reference with the building machine's address; every machine's registries drop-in mirrors that
address by the other live registries (node/registry_loop.py), so once the copies are made, losing
this machine loses no image. The copies are made once the release serves: nothing it needs to
start waits for them or shares the network with them, and a release that fails its check is
not copied. Copies are made at deploy time only: a machine that dies later leaves its images with
one copy fewer until the app's next push.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import requests

from builder import registry as image_registry
from builder import stacks
from builder.build import LayerCache, Limits, Proxy, build, cache_repository, copy
from builder.errors import BuildError, NothingToBuild
from buildpacks import procfile
from buildpacks.packs import DOCKERFILES, exposed_port
from gitserver import DeployError, PushResult
from runtime.replace import Promotion
from vcapp import appconfig, machine
from vcapp.deploy import release_phase, remote_build, stackshare
from vcapp.errors import VcError
from vcapp.machine import NodeConfig, cluster_key, machine_secret
from vcapp.state import apps, buildproxy, builds, events, instances, keys, membership, releases, reposync
from vcapp.state.store import Store

log = logging.getLogger("vcapp.deploy")

# A new release gets its start grace (30 s by default, runtime/spec.py) to pass its first
# check, plus this for the placer to assign it, the image pull (~100 MB over the LAN) and the
# container start. Past that, something is wrong and the pusher should not wait longer.
HEALTH_WAIT_EXTRA_S = 60.0
DEFAULT_START_GRACE_S = 30.0
POLL_S = 0.2  # a report changes as soon as the runtime sees it (a new instance: its first passing probe)
REGISTRY_PORT = image_registry.DEFAULT_PORT
CACHE_PROBE_S = 1.0  # a registry answers /v2/ in milliseconds; a second means it is gone
# Registries besides the builder's that get each release image: any one machine (or two)
# can die and the image is still pulled from a copy, as app data is (three copies).
IMAGE_COPIES = 2

Log = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str


@dataclass
class Progress:
    """How far one push got, for its build record (vcapp/state/builds.py)."""

    stage: str = "config"
    built_on: str | None = None
    release: int | None = None


class Deployer:
    """on_push for one machine's API: `store()` gives this thread's Store; node config is read per push.
    Every push is a build record (vcapp/state/builds.py) with its whole log, whatever becomes of it."""

    def __init__(self, store: Callable[[], Store], node: Callable[[], NodeConfig | None] = NodeConfig.load):
        self.store = store
        self.node = node

    def __call__(self, *, app: str, ref: str, old_sha: str, new_sha: str, source_dir: Path, log: Log,
                 who: str) -> PushResult:
        store = self.store()
        try:
            spec = apps.get_app(store, app)
        except VcError as e:
            raise DeployError(e.message) from None
        kept = kept_text(app, spec)
        node = self.node()
        book, progress = builds.LogBook(log), Progress()
        number = builds.start(store, app, sha=new_sha, ref=ref, who=who, receiver=node.name if node else "")
        book.keep(f"-----> push of {new_sha[:7]} to {ref} by {who}, received on {node.name if node else '?'}")
        book(f"-----> build {number} of {app} (`vcapp builds log {app} {number}` shows this log again)")
        try:
            result = self._deploy(store, node, app, spec, number, new_sha, source_dir, book, who, progress)
        except DeployError as e:
            self._finish(store, app, number, book, progress, str(e))
            raise DeployError(str(e), kept) from None
        except Exception as e:
            self._finish(store, app, number, book, progress, f"internal error {type(e).__name__}: {e}")
            raise
        if result.ok:
            book.keep(f"-----> Released v{result.release}: {result.message}")
            builds.finish(store, app, number, builds.SUCCEEDED, book, reason=result.message,
                          built_on=progress.built_on, release=progress.release)
            return result
        self._finish(store, app, number, book, progress, result.message)
        return dataclasses.replace(result, kept=result.kept or kept)

    @staticmethod
    def _finish(store: Store, app: str, number: int, book: builds.LogBook, progress: Progress, why: str) -> None:
        book.keep(f"!      {why}")
        result = builds.REFUSED if progress.stage == "config" else builds.FAILED
        try:
            builds.finish(store, app, number, result, book, reason=why, stage=progress.stage,
                          built_on=progress.built_on, release=progress.release)
        except Exception:  # the pusher still hears why; the record stays "building"
            log.exception("deploy: could not record build %s of %s", number, app)

    def _deploy(self, store: Store, node: NodeConfig | None, app: str, spec: dict, build: int, new_sha: str,
                source_dir: Path, log: Log, who: str, progress: Progress) -> PushResult:
        """Build (the image is tagged with the build number), record the next release, run its
        release phase, set it and wait for it to serve."""
        started, serving = time.monotonic(), spec.get("release")
        config = read_config(source_dir, app, log)
        table, release_command = process_table(source_dir, config, log)
        if node is None:
            raise DeployError("this machine is not in a cluster (no node.json); push to a cluster machine's API")
        progress.stage = "build"

        def building_on(name: str) -> None:
            progress.built_on = name

        built = remote_build.build_somewhere(store, node, app, build, source_dir, log,
                                            lambda: build_here(store, node, app, build, source_dir, log),
                                            building_on)
        rec = {"kind": "build", "description": f"Deploy {new_sha[:7]}", "sha": new_sha, "image": built["image"],
               "digest": built["digest"], "time": time.time(), "who": who,
               "config": dict(config.spec(), processes=table), "language": built["language"],
               "build_seconds": built["seconds"], "built_on": built["built_on"], "copies": [],
               "build": build, "status": "deploying"}
        try:
            rec = releases.record_next(store, app, rec)
        except VcError as e:
            raise DeployError(e.message) from None
        number = rec["number"]
        progress.built_on, progress.release = built["built_on"], number
        before = releases.find(store, app, serving) if isinstance(serving, int) else None
        if release_command:
            progress.stage = "release phase"
            try:
                release_phase.run(store, app, number, releases.run_image(rec), release_command, rec["config"], log)
            except release_phase.ReleaseFailed as e:
                return self._refuse(store, app, number, before, str(e))
        progress.stage = "health check"
        return self._release(store, app, rec, before, log, started, lambda: copy_release_image(
            store, node, app, build, built, log))

    def _refuse(self, store: Store, app: str, number: int, before: dict | None, why: str) -> PushResult:
        """The release phase failed: v`number` never runs; what served keeps serving."""
        keeps = f"v{before['number']} keeps serving" if before else "no earlier release was serving"
        releases.mark(store, app, number, "failed", why)
        events.record(store, "deploy.failed", f"app {app} v{number} refused: {why}; {keeps}", app=app, release=number)
        return PushResult.failed(f"release v{number} refused: {why}; {keeps}")

    def _release(self, store: Store, app: str, rec: dict, before: dict | None, log: Log,
                 started: float, make_copies: Callable[[], list[str]]) -> PushResult:
        """Set the app to release `rec`; if it fails its check, back to `before` (what served).
        Once it serves, `make_copies()` gives its image to more machines; the push ends after."""
        number = rec["number"]
        spec = apps.run_release(store, app, rec)
        count = int(spec.get("count", 1))
        log(f"-----> v{number} set; waiting for {count} instance{'s' if count != 1 else ''} to pass "
            f"{health_text(spec.get('health'))}")
        outcome = wait_serving(store, app, apps.runtime_release(spec), count, health_wait(spec), log)
        if outcome.ok:
            seconds = time.monotonic() - started
            log(f"-----> v{number} live {seconds:.1f} s after the push: {outcome.message}")
            held = make_copies()
            if held:
                log(f"-----> v{number} durable: its image is on {len(held) + 1} machines")
            releases.mark(store, app, number, "released", outcome.message, deploy_seconds=round(seconds, 1),
                          copies=held)
            return PushResult.released(number, app_url(store, app), f"{outcome.message} ({seconds:.0f} s after the push)")
        return self._fall_back(store, app, number, before, outcome.message)

    def _fall_back(self, store: Store, app: str, number: int, before: dict | None, why: str) -> PushResult:
        if before is not None:
            apps.run_release(store, app, before)
            keeps = f"v{before['number']} keeps serving"
        else:
            keeps = "no earlier release was serving"
        releases.mark(store, app, number, "failed", why)
        events.record(store, "deploy.failed", f"app {app} v{number} failed its health check: {why}; {keeps}",
                      app=app, release=number)
        return PushResult.failed(f"release v{number} failed its health check ({why}); {keeps}")


def kept_text(app: str, spec: dict) -> str:
    """What still runs when a push of `app` fails, in words (the spec from before the push)."""
    if isinstance(spec.get("release"), int):
        return f"{app} keeps running v{spec['release']}"
    if spec.get("image"):
        return f"{app} keeps running its image {spec['image']}"
    return f"{app} has no earlier release, so nothing of it runs yet"


def read_config(source: Path, app: str, log: Log) -> appconfig.AppConfig:
    path = source / appconfig.FILENAME
    dockerfile = next((source / n for n in DOCKERFILES if (source / n).is_file()), None)
    exposed = exposed_port(dockerfile.read_text(errors="replace")) if dockerfile else None
    if not path.is_file():
        config = with_exposed_port(appconfig.defaults(), None, exposed)
        where = f"EXPOSE in {dockerfile.name}" if exposed else "the default"
        log(f"-----> no {appconfig.FILENAME}: port {config.port} ({where}), TCP health check")
        return config
    text = path.read_text(errors="replace")
    try:
        config = with_exposed_port(appconfig.parse(text, app), text, exposed)
    except appconfig.AppConfigError as e:
        raise DeployError(str(e)) from None
    log(f"-----> {appconfig.FILENAME}: port {config.port}, {health_text(config.health)}")
    return config


def with_exposed_port(config: appconfig.AppConfig, toml_text: str | None, exposed: int | None) -> appconfig.AppConfig:
    """The port rule (pure): vcapp.toml's `port` when it sets one, else the Dockerfile's EXPOSE
    (buildpacks.packs.exposed_port), else the default. `config` was parsed from `toml_text`."""
    if exposed is None:
        return config
    if toml_text is not None and "port" in tomllib.loads(toml_text):
        return config
    return dataclasses.replace(config, port=exposed)


def process_table(source: Path, config: appconfig.AppConfig, log: Log) -> tuple[dict[str, list[str]], str | None]:
    """The release's process types besides web (type -> command, each run through sh -c) and
    its release command: every Procfile line, vcapp.toml's [processes] winning over a line of
    the same type. DeployError on a bad Procfile line or type name."""
    try:
        lines = procfile.processes(source)
    except procfile.ProcfileError as e:
        raise DeployError(str(e)) from None
    lines.update(config.processes or {})
    release = lines.pop("release", None)
    lines.pop("web", None)
    try:
        table = apps.parse_commands({k: ["sh", "-c", v] for k, v in lines.items()})
    except VcError as e:
        raise DeployError(f"Procfile or vcapp.toml [processes]: {e.message}") from None
    for kind, command in sorted(lines.items()):
        log(f"-----> {kind} process: {command} (no HTTP; `vcapp scale APP {kind}=N`)")
    return table, release


def build_here(store: Store, node: NodeConfig, app: str, number: int, source: Path, log: Log) -> dict:
    """Build on this machine and push to its registry: the release's image fields."""
    registry = f"{node.addr}:{REGISTRY_PORT}"
    if not image_registry.answers(registry):
        raise DeployError(f"the image registry on {node.name} ({registry}) is not answering: the node daemon "
                          "starts it; check `vcapp status` and its log (data dir log/registry.log)")
    result = run_build(source, app, number, registry, log, buildproxy.for_build(store, registry),
                       stackshare.for_build(store, node, log), layer_cache(store, node, app, registry, log))
    return {"image": result.image, "digest": result.digest, "language": result.language,
            "seconds": round(result.seconds, 1), "built_on": node.name}


def layer_cache(store: Store, node: NodeConfig, app: str, registry: str, log: Log) -> LayerCache:
    """Where a build of `app` on `node` shares its step layers: its own `registry`'s cache, and
    the one of the machine that built the serving release when that is another and its
    registry answers now. One that does not is not asked: buildah would wait out three
    retries on every step (a machine killed moments ago still holds its lease: a build with
    its dead cache took 94 s more in tests/deploy/test_git_push_deploy.py)."""
    nodes = membership.node_records(store)
    own = cache_repository(registry, app)
    before = (store.value(keys.app(app)) or {}).get("built_on")
    addr = (nodes.get(before) or {}).get("addr") if before and before != node.name else None
    if not addr:
        return LayerCache(own)
    theirs = f"{addr}:{REGISTRY_PORT}"
    if before not in membership.alive_machines(store) or not image_registry.answers(theirs, CACHE_PROBE_S):
        log(f"-----> the build-step cache of {before} does not answer: building without it")
        return LayerCache(own)
    return LayerCache(own, (cache_repository(theirs, app),))


def run_build(source: Path, app: str, number: int, registry: str, log: Log, proxy: Proxy | None = None,
              stacks_from: stacks.Share | None = None, cache: LayerCache | None = None):
    """Build and push `source` as <registry>/apps/<app>:<number> (build steps going out through
    `proxy`, the cluster's build.proxy; a missing stack pulled from, or made once and pushed to,
    the cluster registries `stacks_from`; step layers shared through `cache`); DeployError when
    it cannot."""
    parent = os.environ.get("VCAPP_CGROUP_PARENT")
    try:
        return build(source, app, number, registry, on_line=log, limits=Limits(), proxy=proxy,
                     cgroup_parent=f"{parent.rstrip('/')}/builds" if parent else None,
                     authfile=machine.registry_auth_file(), stacks_from=stacks_from, cache=cache)
    except NothingToBuild as e:
        raise DeployError(e.reason) from None
    except BuildError as e:
        raise DeployError(e.reason) from None  # its log already streamed to the pusher


def copy_targets(nodes: dict[str, dict], alive: set[str], own: str, count: int = IMAGE_COPIES) -> list[str]:
    """The live machines (other than `own`) that get a copy: other sites first, then by name."""
    own_site = (nodes.get(own) or {}).get("site")
    others = [n for n, rec in nodes.items() if n != own and n in alive and rec.get("addr")]
    return sorted(others, key=lambda n: (nodes[n].get("site") == own_site, n))[:count]


def copy_release_image(store: Store, node: NodeConfig, app: str, build: int, built: dict, log: Log) -> list[str]:
    """Copy the image of build `build` to more machines' registries: from this machine when it
    built it (it is in its own image storage), else by the builder through its API (POST
    /v1/builds/<app>/<n>/copies). The machines that got a copy; a failure is a warning."""
    try:
        if built["built_on"] == node.name:
            return copy_image(membership.node_records(store), membership.alive_machines(store), node.name,
                              built["image"], log, built["digest"])
        api = reposync.live_apis(store).get(built["built_on"])
        if api is None:
            log(f"-----> warning: the image stays on {built['built_on']} only for now: its API is not answering")
            return []
        return remote_build.copy_there(api, app, build, built["digest"], log, machine_secret(cluster_key()))
    except (DeployError, requests.RequestException) as e:  # the release serves anyway: the push says so
        log(f"-----> warning: the image was not copied to more machines: {e}")
        return []


def copy_image(nodes: dict[str, dict], alive: set[str], own: str, image: str, log: Log,
               digest: str | None = None) -> list[str]:
    """Copy `image` (in this machine's storage: it built it) to the registries of
    copy_targets, in parallel; the names that got it, each holding the same manifest
    (`digest`, what instances pull by). A failed copy is a warning: the release still
    serves, with fewer copies."""
    targets = copy_targets(nodes, alive, own)
    if not targets:
        log(f"-----> no other machine is up: the image is on {own} only until the next push")
        return []
    started, errors = time.monotonic(), {}

    def one(name: str) -> None:
        errors[name] = copy(image, f"{nodes[name]['addr']}:{REGISTRY_PORT}", authfile=machine.registry_auth_file(),
                            digest=digest)

    threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [n for n in targets if errors.get(n) is None]
    for name in targets:
        if errors.get(name):
            log(f"-----> warning: could not copy the image to {name}: {errors[name]}")
    if done:
        log(f"-----> image copied to {' and '.join(done)} in {time.monotonic() - started:.1f} s "
            f"(pullable while any of {len(done) + 1} machines lives)")
    return done


def health_text(health: dict | None) -> str:
    health = health or {"type": "tcp"}
    if health.get("type") == "http":
        return f"the HTTP check of {health.get('path', '/')}"
    return "a TCP check" if health.get("type") == "tcp" else "no health check (type none)"


def health_wait(spec: dict) -> float:
    grace = (spec.get("health") or {}).get("start_grace_s", DEFAULT_START_GRACE_S)
    return float(grace) + HEALTH_WAIT_EXTRA_S


def app_url(store: Store, app: str) -> str:
    domain = membership.cluster_record(store).get("domain") or "localhost"
    return f"https://{app}.{domain}"


def wait_serving(store: Store, app: str, release: str, count: int, timeout: float, log: Log) -> Outcome:
    """Until `count` instances of `app` run `release` healthy, one fails, or `timeout` passes."""
    if count == 0:
        return Outcome(True, "count is 0: nothing to start")
    deadline, said = time.monotonic() + timeout, set()
    while True:
        healthy, failure = check_instances(store, app, release)
        for line in sorted(set(healthy) - said):
            log(f"       {line}")
            said.add(line)
        if failure:
            return Outcome(False, failure)
        if len(healthy) >= count:
            return Outcome(True, f"{count} instance{'s' if count != 1 else ''} healthy")
        if time.monotonic() >= deadline:
            return Outcome(False, f"{len(healthy)} of {count} instances healthy after {timeout:.0f} s: "
                                  f"{why_not(store, app, release)}")
        time.sleep(POLL_S)


def check_instances(store: Store, app: str, release: str) -> tuple[list[str], str | None]:
    """("<instance> on <node>: healthy" for each healthy web instance of release, first failure of
    any process type or None)."""
    assigned = {i: a.get("node") for i, a in instances.assignments(store, app).items()}
    healthy, failure = [], None
    for rep in instances.app_reports(store, app):
        if assigned.get(rep["instance"]) != rep["node"]:
            continue
        where = f"instance {rep.get('instance')} on {rep.get('node')}"
        message = rep.get("message") or ""
        if str(rep.get("release")) == release and rep.get("health") == "healthy":
            if rep.get("process", "web") != "web":  # a worker's check is "it runs": not web's count
                continue
            healthy.append(f"{where}: healthy ({message or 'check passed'})")
        elif str(rep.get("release")) == release and (rep.get("state") == "failed" or rep.get("health") == "unhealthy"):
            failure = failure or f"{where}: {message or rep.get('state')}"
        elif (refused := rep.get("promotion") or {}).get("release") == release \
                and refused.get("outcome") == Promotion.REFUSED.value:
            failure = failure or (f"{where}: release {release} failed its health check: {refused.get('check')}; "
                                  f"release {rep.get('release')} keeps serving")
    return healthy, failure


def why_not(store: Store, app: str, release: str) -> str:
    """What the instances of `app` are doing instead of serving `release` (for the pusher)."""
    assigned = instances.assignments(store, app)
    if not assigned:
        pending = (store.value(keys.pending(app)) or {}).get("instances", {})
        return "; ".join(f"instance {i}: {why}" for i, why in sorted(pending.items())) or "no instance assigned yet"
    reports = {r["instance"]: r for r in instances.app_reports(store, app)}
    parts = []
    for inst, a in sorted(assigned.items()):
        rep = reports.get(inst)
        if rep is None:
            parts.append(f"instance {inst} on {a.get('node')}: no report from its machine yet")
        else:
            parts.append(f"instance {inst} on {rep.get('node')}: release {rep.get('release')} {rep.get('state')}"
                         f"/{rep.get('health')} {rep.get('message') or ''}".rstrip())
    return "; ".join(parts)


def on_push_for(store: Callable[[], Store]) -> Deployer:
    """The on_push hook for the API of this machine (see vcapp/api/git.py)."""
    return Deployer(store)
