"""Base images a Dockerfile builds FROM: names resolved the way Docker resolves them, and
pulled before the build, once, failing in seconds with the image, the registry and why.

    FROM node:20            -> docker.io/library/node:20
    FROM user/img           -> docker.io/user/img:latest
    FROM ghcr.io/o/img:1    -> ghcr.io/o/img:1 (a first part with '.' or ':', or "localhost",
                               is a registry)
    FROM localhost/vcapp/stack-python:bookworm, FROM scratch, FROM <earlier stage>, and a FROM
    naming a build argument ($VAR) are left as they are and never pulled here.

`prepare` rewrites the FROM lines to the full names (a copy beside the tree: the tree is
never written to) and pulls each missing image with `buildah pull --retry 0` under a time
limit, through the registries.conf.d mirrors and the auth file the node daemon writes
(vcapp/node/registry_loop.py); the build itself then runs with `--pull-never`.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from builder import proc
from builder.errors import BuildError

DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"  # where docker.io's API answers
# A pull of a few hundred MB through a proxy takes minutes; an unreachable registry or an
# unknown image fails at once (no retries), so this only bounds a registry that stalls.
PULL_TIMEOUT = 600.0
# From start to the first blob copied: a registry that answers does so in a second or two; a
# name lookup or a connection into a black hole otherwise waits out the resolver's and TCP's
# timeouts, a minute and more, per registry tried.
START_TIMEOUT = 15.0
DEBUG_LINE = re.compile(r'^time="[^"]*" level=(debug|trace)')
ATTEMPT_FAILED = re.compile(r'Accessing \\"([^\\]+)\\" failed: (.*?)"?$')
FROM_LINE = re.compile(r"^(\s*FROM\s+)((?:--\S+\s+)*)(\S+)(.*)$", re.IGNORECASE)
STAGE_NAME = re.compile(r"\s+AS\s+(\S+)\s*$", re.IGNORECASE)
# What a reference may contain (docker's grammar, loosely): anything else is not resolved.
REFERENCE = re.compile(r"[a-z0-9][a-z0-9._:/-]*(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?")


class PullError(BuildError):
    """A base image could not be pulled; the message names image, registry and reason."""


def resolve(ref: str) -> str:
    """The full name Docker gives `ref`: registry/path:tag (":latest" when neither tag nor digest)."""
    name, digest = (ref.split("@", 1) + [""])[:2]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, name
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not digest and ":" not in path.rsplit("/", 1)[-1]:
        path += ":latest"
    return f"{registry}/{path}" + (f"@{digest}" if digest else "")


def registry_of(image: str) -> str:
    """The registry host a full image name is pulled from (docker.io's API host for docker.io)."""
    host = image.split("/", 1)[0]
    return DOCKER_HUB_ENDPOINT if host == DOCKER_HUB else host


@dataclass(frozen=True)
class Rewritten:
    text: str  # the Dockerfile with every resolvable FROM naming its full image
    pulls: tuple[str, ...]  # full names of the images it builds FROM outside this machine, in file order


def rewrite(dockerfile: str) -> Rewritten:
    """Resolve every FROM of a Dockerfile (pure). Stage names, scratch, `$VAR` and localhost
    images are left as they are; only the others are to be pulled."""
    stages: set[str] = set()
    pulls: list[str] = []
    out = []
    for line in dockerfile.splitlines(keepends=True):
        match = FROM_LINE.match(line.rstrip("\r\n"))
        if not match:
            out.append(line)
            continue
        head, flags, ref, tail = match.groups()
        stage = STAGE_NAME.match(tail)
        keep = (ref.lower() in stages or ref.lower() == "scratch" or "$" in ref
                or not REFERENCE.fullmatch(ref))
        full = ref if keep else resolve(ref)
        if not keep and not full.startswith("localhost/"):
            pulls.append(full)
        if stage:
            stages.add(stage.group(1).lower())
        out.append(f"{head}{flags}{full}{tail}" + line[len(line.rstrip("\r\n")):])
    return Rewritten("".join(out), tuple(dict.fromkeys(pulls)))


def exists_command(image: str) -> list[str]:
    return ["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", image]


def pull_command(image: str, authfile=None, env_file=None) -> list[str]:
    """buildah pull of one base image: no retries (a failure is reported at once), the
    credentials of `authfile` and the proxy variables of `env_file` (proc.write_env_file):
    never a password in argv. Debug logging names each mirror tried and why it failed
    (`Accessing "..." failed: ...`)."""
    auth = ["--authfile", str(authfile)] if authfile else []
    return proc.with_env_file(["buildah", "--log-level", "debug", "pull", "--retry", "0", "--policy", "missing",
                               *auth, image], env_file)


def why(tail: list[str]) -> str:
    """The reason in buildah's last error line, without its long prefixes."""
    lines = [l.strip() for l in tail if l.strip()]
    errors = [l for l in lines if "error" in l.lower()] or lines
    text = errors[-1] if errors else "no output"
    text = re.sub(r"^(Error:\s*|level=\w+\s+msg=)", "", text).strip('"')
    return text[-400:]


def failure_message(image: str, reason: str) -> str:
    host = image.split("/", 1)[0]
    return (f"cannot pull {image} from {registry_of(image)}: {reason}; add a mirror with "
            f"`vcapp registries add {host} --mirror URL` if this machine cannot reach it")


class _Pull:
    """One pull's output: buildah's own lines go to the push log, debug lines are kept only
    for the failed mirror attempts; a pull not copying within START_TIMEOUT is killed."""

    def __init__(self, spawn: proc.Spawn, on_line: proc.LineSink):
        self.spawn, self.on_line = spawn, on_line
        self.started = threading.Event()  # the registry answered: blobs are being copied
        self.stalled = False
        self.attempts: list[str] = []
        self.process = None

    def popen(self, argv, **kw):
        self.process = self.spawn(argv, **kw)
        return self.process

    def line(self, line: str) -> None:
        if DEBUG_LINE.match(line):
            failed = ATTEMPT_FAILED.search(line)
            if failed:
                self.attempts.append(f"{failed.group(1)}: {failed.group(2)}".replace('\\"', '"'))
            return
        if line.startswith(("Getting image source signatures", "Copying blob")):
            self.started.set()
        self.on_line(line)

    def watch(self, seconds: float) -> None:
        if not self.started.wait(seconds) and self.process is not None and self.process.poll() is None:
            self.stalled = True
            proc.kill_group(self.process, grace=2)


def pull(images: tuple[str, ...], spawn: proc.Spawn, on_line: proc.LineSink, authfile=None,
         env_file=None, timeout: float = PULL_TIMEOUT,
         start_timeout: float = START_TIMEOUT) -> None:
    """Pull each image this machine does not have; PullError for the first that fails."""
    for image in images:
        if proc.stream(spawn, exists_command(image), None, 30).returncode == 0:
            on_line(f"-----> base image {image} is here")
            continue
        on_line(f"-----> pulling base image {image}")
        run = _Pull(spawn, on_line)
        watchdog = threading.Thread(target=run.watch, args=(start_timeout,), daemon=True)
        watchdog.start()
        try:
            outcome = proc.stream(run.popen, pull_command(image, authfile, env_file), run.line, timeout)
        finally:
            run.started.set()  # ends the watchdog
        mirrors = f" (tried first: {'; '.join(run.attempts)})" if run.attempts else ""
        if run.stalled:
            reason = f"no answer within {start_timeout:.0f} s (the name lookup or the connection timed out)"
            raise PullError(failure_message(image, reason + mirrors), outcome.tail)
        if outcome.timed_out:
            raise PullError(failure_message(image, f"no image after {timeout:.0f} s"), outcome.tail)
        if outcome.returncode != 0:
            raise PullError(failure_message(image, why(outcome.tail) + mirrors), outcome.tail)
