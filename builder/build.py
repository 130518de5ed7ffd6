"""Building a source tree into an OCI image with buildah, and pushing it to the registry.

    build(tree, app, release, registry, on_line=...)
      detect (buildpacks) -> stack images present? (else pulled from the cluster registry,
      loaded or made: builder/stacks.py) -> buildah bud --layers (limits, CA bundle, time
      limit, log streamed) -> buildah push <registry>/apps/<app>:<release>

A Dockerfile or Containerfile at the root of the tree is built as it is, its FROM names
resolved like Docker's (builder/images.py: `node:20` is docker.io/library/node:20) in a copy
written beside the tree; otherwise the buildpack's Containerfile is written beside (never
into) the tree. The base images a Dockerfile names are pulled before the build (no retries,
through the machine's registries.conf.d mirrors and auth file); buildah itself pulls nothing
(`--pull-never`).
Build steps run in a private network namespace of the machine that builds: they reach
PyPI/npm when that machine does, directly or through the forward proxy a build is given
(`Proxy`: the standard HTTP_PROXY/HTTPS_PROXY/NO_PROXY variables, which pip, npm, go, apt
and debootstrap honour; a simulated machine's only way out is such a proxy).
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import secrets
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from buildpacks.packs import DetectError, Plan, detect
from buildpacks.stacks import CA_BUNDLE, STACKS
from builder import images, proc, stacks
from builder.errors import BuildError, BuildTimeout, NothingToBuild, PushError

# A cold Python/Node build with a few dozen dependencies takes 1-3 minutes here; a step that
# runs 15 minutes is hung or mining. Override per call (Limits) or with VCAPP_BUILD_TIMEOUT.
BUILD_TIMEOUT = float(os.environ.get("VCAPP_BUILD_TIMEOUT", "900"))
PUSH_TIMEOUT = 300.0  # a few hundred MB over the cluster network; minutes means the registry is gone
COPY_TIMEOUT = 120.0  # a copy to another machine: the layers it lacks, over the LAN or the mesh
DEFAULT_CPUS = 1.0  # a build may use one core: the machine keeps serving its apps meanwhile
DEFAULT_MEMORY = "1g"  # pip/npm/go builds of small apps fit well below this
CPU_PERIOD = 100_000  # µs: the kernel's default CFS period
# Explicit limits: runc cannot raise nofile above our own hard limit (no CAP_SYS_RESOURCE).
NOFILE_WANTED = 16384
NPROC_LIMIT = 2048
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IGNORED = (".git", ".hg", ".svn")  # never part of a buildpack image
# Build steps run in a cgroup of their own below the machine's parent: runc removes a step's
# cgroup when the step ends, and a killed build leaves nothing running outside it.
DEFAULT_CGROUP_PARENT = "/vcapp-builds"
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Limits:
    """What one build may use: CPU cores (CFS quota), memory (no swap beyond), wall time."""

    cpus: float = DEFAULT_CPUS
    memory: str = DEFAULT_MEMORY
    seconds: float = BUILD_TIMEOUT


@dataclass(frozen=True)
class Proxy:
    """The forward proxy build steps reach package registries through, and the hosts and
    networks they reach directly (loopback always)."""

    url: str
    no_proxy: tuple[str, ...] = ()

    def __repr__(self) -> str:  # the URL may carry a login: never in a log line or a traceback
        return f"Proxy(url={proc.redact(self.url)!r}, no_proxy={self.no_proxy!r})"

    def environment(self) -> list[tuple[str, str]]:
        """The variables, upper and lower case (curl reads only http_proxy in lower case).
        buildah hands these names to RUN steps without an ARG line and keeps them out of
        the image's history and config."""
        bypass = ",".join(dict.fromkeys(LOOPBACK + self.no_proxy))
        pairs = [("HTTP_PROXY", self.url), ("HTTPS_PROXY", self.url), ("NO_PROXY", bypass)]
        return pairs + [(name.lower(), value) for name, value in pairs]


LOOPBACK = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class BuildResult:
    image: str  # <registry>/apps/<app>:<release>
    digest: str | None  # manifest digest in the registry (sha256:...), None when not pushed
    language: str  # "dockerfile" or the buildpack's name
    seconds: float
    log_tail: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LayerCache:
    """Build-step layers shared between machines through the cluster registries (buildah
    --cache-to/--cache-from, as its --layers cache but in a registry): each step's layer is
    pushed to `to` (this machine's <registry>/cache/<app>); a step not in this machine's own
    cache is looked for in `sources` (repositories of the same form on the machines that built
    the app before) before it runs. A push that lands on a machine that never built the app
    then takes its dependency layers instead of installing them again."""

    to: str
    sources: tuple[str, ...] = ()


CACHE_REPOSITORY = "cache/{app}"  # in each registry: the build-step layers of an app


def cache_repository(registry: str, app: str) -> str:
    """Where `registry` keeps the build-step layers of `app`: <registry>/cache/<app>."""
    if not NAME.match(app):
        raise ValueError(f"app name {app!r} must be lowercase letters, digits and dashes (at most 63)")
    return f"{registry}/{CACHE_REPOSITORY.format(app=app)}"


def image_ref(registry: str | None, app: str, release: int | str) -> str:
    """Where an app's release image lives: <registry>/apps/<app>:<release>."""
    if not NAME.match(app):
        raise ValueError(f"app name {app!r} must be lowercase letters, digits and dashes (at most 63)")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", str(release)):
        raise ValueError(f"release {release!r} is not a valid image tag: use the release number")
    return f"{registry or 'localhost'}/apps/{app}:{release}"


def _ulimits() -> list[str]:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = NOFILE_WANTED if hard == resource.RLIM_INFINITY else min(NOFILE_WANTED, hard)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={NPROC_LIMIT}:{NPROC_LIMIT}"]


def bud_command(context: Path, containerfile: Path, tag: str, limits: Limits,
                cgroup_parent: str | None = None, ignorefile: Path | None = None,
                proxy_env: Path | None = None, cache: LayerCache | None = None,
                authfile: Path | None = None) -> list[str]:
    """The buildah bud command line for one build (pure: tested as data). With `proxy_env` (a
    proc.write_env_file of Proxy.environment), buildah runs with the proxy variables, which
    it hands to every RUN step (its --http-proxy, on by default) without a --build-arg on the
    command line or a trace in the image. With `cache`, step layers go to and come from the
    cluster registries (plain HTTP, the credentials in `authfile`)."""
    argv = ["buildah", "bud", "--layers", "--pull-never", "--format", "oci", "-f", str(containerfile), "-t", tag,
            "--cpu-period", str(CPU_PERIOD), "--cpu-quota", str(int(limits.cpus * CPU_PERIOD)),
            "--memory", limits.memory, "--memory-swap", limits.memory, *_ulimits()]
    if HOST_CA_BUNDLE.is_file():
        argv += ["--volume", f"{HOST_CA_BUNDLE}:{CA_BUNDLE}:ro"]
    if cgroup_parent:
        argv += ["--cgroup-parent", cgroup_parent]
    if ignorefile:
        argv += ["--ignorefile", str(ignorefile)]
    if cache:
        argv += ["--tls-verify=false", *_auth(authfile), "--cache-to", cache.to]
        for source in cache.sources:
            argv += ["--cache-from", source]
    return proc.with_env_file(argv + [str(context)], proxy_env)


def _plan(tree: Path, on_line: proc.LineSink) -> Plan:
    try:
        plan = detect(tree)
    except DetectError as e:
        raise NothingToBuild(str(e)) from None
    what = "Dockerfile found: building it as it is" if plan.dockerfile else f"{plan.language} app detected"
    on_line(f"-----> {what}")
    if plan.runtime:
        on_line(f"-----> {plan.runtime}")
    if plan.command:
        on_line(f"-----> web process: {plan.command}")
    return plan


def _write_buildpack_files(plan: Plan, tree: Path, work: Path) -> tuple[Path, Path]:
    """The generated Containerfile and an ignore file (the tree's .dockerignore + VCS dirs)."""
    containerfile = work / "Containerfile"
    containerfile.write_text(plan.containerfile or "")
    own = tree / ".dockerignore"
    ignores = (own.read_text() + "\n" if own.is_file() else "") + "\n".join(IGNORED) + "\n"
    ignorefile = work / "ignore"
    ignorefile.write_text(ignores)
    return containerfile, ignorefile


def _failure(outcome: proc.Outcome, limits: Limits) -> BuildError:
    if outcome.timed_out:
        return BuildTimeout(
            f"build killed: it ran over its time limit of {limits.seconds:.0f} s; make the slow step "
            "faster or raise the limit (VCAPP_BUILD_TIMEOUT)", outcome.tail)
    hint = "fix the failing step shown above and push again"
    text = "\n".join(outcome.tail)
    if "image not known" in text or "pull policy is" in text:
        hint = (f"FROM names an image this machine does not have and could not resolve (a FROM naming a "
                f"build argument is not pulled): name the image, e.g. alpine:3.19, or a local stack image "
                f"such as {STACKS['python'].alias}")
    elif "Killed" in text or "exit status 137" in text:
        hint = f"a step was killed, likely for using over the build memory limit ({limits.memory})"
    return BuildError(f"build failed (buildah exited {outcome.returncode}): {hint}", outcome.tail)


def _kill_cgroup(cgroup: str) -> None:
    """SIGKILL whatever a killed build left running in its cgroup tree (buildah's RUN step)."""
    for base in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):
        root = base / cgroup.lstrip("/")
        if (root / "cgroup.procs").is_file():
            for dirpath, _, files in os.walk(root):
                pids = Path(dirpath, "cgroup.procs").read_text().split() if "cgroup.procs" in files else []
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            return


def _auth(authfile: Path | None) -> list[str]:
    """buildah's flag naming the registry credentials (a file: never a password in argv)."""
    return ["--authfile", str(authfile)] if authfile else []


def push(image: str, spawn: proc.Spawn, on_line: proc.LineSink, work: Path, authfile: Path | None = None) -> str:
    """Push a built image to its registry over plain HTTP; return the manifest digest."""
    digestfile = work / "digest"
    argv = ["buildah", "push", "--tls-verify=false", *_auth(authfile), "--digestfile", str(digestfile),
            image, f"docker://{image}"]
    outcome = proc.stream(spawn, argv, on_line, PUSH_TIMEOUT)
    if outcome.returncode != 0:
        registry = image.split("/", 1)[0]
        raise PushError(f"built {image} but could not push it: is the cluster registry at {registry} up?",
                        outcome.tail)
    return digestfile.read_text().strip()


def copy(image: str, registry: str, spawn: proc.Spawn | None = None, authfile: Path | None = None,
         digest: str | None = None) -> str | None:
    """Push the local `image` (<its registry>/<path>) to another registry as <registry>/<path>.
    None when the copy is there, else why not (the last line buildah printed). With `digest`
    (what the first push made), a copy whose manifest has another digest is an error: images
    are pulled by digest, from any registry holding a copy."""
    target = f"{registry}/{image.split('/', 1)[1]}"
    with tempfile.TemporaryDirectory(prefix="vcapp-copy-") as tmp:
        digestfile = Path(tmp) / "digest"
        argv = ["buildah", "push", "--tls-verify=false", *_auth(authfile), "--digestfile", str(digestfile),
                image, f"docker://{target}"]
        outcome = proc.stream(spawn or proc.local(), argv, None, COPY_TIMEOUT)
        if outcome.timed_out:
            return f"no answer from {registry} within {COPY_TIMEOUT:.0f} s"
        if outcome.returncode != 0:
            return outcome.tail[-1] if outcome.tail else f"buildah push exited with {outcome.returncode}"
        copied = digestfile.read_text().strip() if digestfile.exists() else ""
    if digest and copied != digest:
        return f"the copy's manifest digest {copied or '(none)'} is not the release's {digest}"
    return None


def build(tree: Path, app: str, release: int | str, registry: str | None, *,
          on_line: proc.LineSink | None = None, spawn: proc.Spawn | None = None,
          limits: Limits = Limits(), cgroup_parent: str | None = None,
          stack_cache: Path | None = None, proxy: Proxy | None = None, authfile: Path | None = None,
          stacks_from: stacks.Share | None = None, cache: LayerCache | None = None) -> BuildResult:
    """Build `tree` into <registry>/apps/<app>:<release> and push it (no push when registry is None)
    with the credentials in `authfile` (containers-auth.json) when the registry wants them.

    Log lines go to on_line as buildah prints them; with `proxy`, build steps (and a stack
    made for this build) reach the registries through it. `stacks_from`: the cluster registries
    a missing stack is pulled from, and pushed to when this machine loads or makes it
    (builder/stacks.py). `cache`: the registries that share build-step layers. Raises NothingToBuild (before
    starting anything), BuildTimeout, BuildError (with the log tail), StackError or PushError."""
    say = on_line or (lambda line: None)
    spawn = spawn or proc.local()
    start = time.monotonic()
    tag = image_ref(registry, app, release)
    plan = _plan(Path(tree), say)
    for name in plan.stacks:
        stacks.ensure_loaded(STACKS[name], spawn, say, stack_cache, dict(proxy.environment()) if proxy else None,
                             stacks_from)
    with tempfile.TemporaryDirectory(prefix=f"vcapp-build-{app}-") as tmp:
        work = Path(tmp)
        proxy_env = proc.write_env_file(work / "proxy.env", proxy.environment()) if proxy else None
        if plan.dockerfile:
            resolved = images.rewrite(plan.dockerfile.read_text(errors="replace"))
            images.pull(resolved.pulls, spawn, say, authfile, proxy_env)
            containerfile, ignorefile = work / plan.dockerfile.name, None
            containerfile.write_text(resolved.text)
        else:
            containerfile, ignorefile = _write_buildpack_files(plan, Path(tree), work)
        cgroup = f"{(cgroup_parent or DEFAULT_CGROUP_PARENT).rstrip('/')}/build-{app}-{secrets.token_hex(4)}"
        argv = bud_command(Path(tree), containerfile, tag, limits, cgroup, ignorefile, proxy_env, cache, authfile)
        try:
            outcome = proc.stream(spawn, argv, say, limits.seconds)
        finally:
            _kill_cgroup(cgroup)  # empty after a finished build; not after a kill or a crash
        if outcome.timed_out or outcome.returncode != 0:
            raise _failure(outcome, limits)
        digest = push(tag, spawn, say, work, authfile) if registry else None
    seconds = time.monotonic() - start
    say(f"-----> built {tag} in {seconds:.1f} s" + (f" ({digest})" if digest else ""))
    return BuildResult(tag, digest, plan.language, seconds, outcome.tail)
