"""What happens when a push arrives: the deploy hook and its live log on the git side-band.

Owns `DeployReceivePackHandler`, a dulwich `ReceivePackHandler` whose per-ref update hook
runs the caller's `on_push` for pushes to a deploy branch (`main`/`master`), after the pack
is stored and BEFORE the ref moves. Every `log(line)` goes out at once as a side-band
progress packet, which git prints as `remote: <line>`.

Decision on failed deploys: the ref update is REJECTED with the reason (`ng refs/heads/main
deploy failed: ...`), so `git push` exits non-zero, prints `! [remote rejected]`, and the
branch keeps pointing at the commit of the running release. The pushed objects stay in the
object store (unreferenced), so the next push of the same commit sends almost nothing.

Receive-pack response on one push (HTTP body, pkt-lines, side-band-64k):

    0005\\2<progress>...   band 2: "-----> Deploying ...", each log(line), the result
    0005\\1                band 1 empty: keepalive while on_push is silent
    ....\\1<pkt-lines>     band 1: report-status ("unpack ok", "ok <ref>" / "ng <ref> <why>")
    0000                   flush
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol as TypingProtocol

from dulwich.errors import GitProtocolError
from dulwich.graph import can_fast_forward
from dulwich.protocol import CAPABILITY_ATOMIC, CAPABILITY_SIDE_BAND_64K, SIDE_BAND_CHANNEL_PROGRESS, Protocol
from dulwich.server import Backend, ReceivePackHandler

from gitserver.repos import RepoError, checkout_tree

log = logging.getLogger(__name__)

# Proxies between git and us (the edge's Caddy, corporate proxies) drop connections idle for
# about a minute; a build can be quiet for longer (a big `pip install` without output). A
# keepalive every 15 s keeps the push alive through all of them.
KEEPALIVE_SECONDS = 15.0
DEPLOY_BRANCHES = ("main", "master")
LOCK_FILE = "vcapp-deploy.lock"
ZERO_SHA = b"0" * 40


class DeployError(Exception):
    """Raise from on_push with a message for the pusher (nothing to build, build failed...).
    `kept`: what still runs, in words ("blog keeps running v4"); "" lets the hook guess."""

    def __init__(self, message: str, kept: str = ""):
        super().__init__(message)
        self.kept = kept


@dataclass(frozen=True)
class PushResult:
    """What on_push says happened. ok=False means the deploy failed and `message` says why;
    `kept` then says what still runs ("" lets the hook guess from the branch)."""

    ok: bool
    message: str = ""
    release: int | None = None
    url: str | None = None
    kept: str = ""

    @classmethod
    def released(cls, release: int, url: str, message: str = "") -> "PushResult":
        return cls(ok=True, message=message, release=release, url=url)

    @classmethod
    def failed(cls, message: str, kept: str = "") -> "PushResult":
        return cls(ok=False, message=message, kept=kept)


class OnPush(TypingProtocol):
    """The deploy callable. Called with keyword arguments; `log(line)` streams to the pusher."""

    def __call__(self, *, app: str, ref: str, old_sha: str, new_sha: str, source_dir: Path,
                 log: Callable[[str], None], who: str) -> PushResult: ...


@dataclass(frozen=True)
class PushContext:
    """Everything a receive-pack request needs beyond what dulwich passes in."""

    app: str
    who: str
    on_push: OnPush
    deploy_branches: tuple[str, ...] = DEPLOY_BRANCHES
    keepalive_seconds: float = KEEPALIVE_SECONDS
    scratch_dir: str | None = None  # where pushed trees are checked out; None = system temp


class SidebandLog:
    """Thread-safe progress writer: lines to band 2, keepalives to band 1; never raises.

    If the pusher goes away (Ctrl-C), writes start failing: we stop writing and let the
    deploy finish, so the repository and the release still agree.
    """

    def __init__(self, proto: Protocol, enabled: bool):
        self._proto = proto
        self._enabled = enabled
        self._lock = threading.Lock()
        self._last_write = time.monotonic()

    def line(self, text: str) -> None:
        for part in str(text).rstrip("\n").split("\n"):
            self._write(lambda: self._proto.write_sideband(
                SIDE_BAND_CHANNEL_PROGRESS, part.rstrip("\r").encode("utf-8", "replace") + b"\n"))

    def keepalive_if_idle(self, idle: float) -> None:
        if time.monotonic() - self._last_write >= idle:
            self._write(lambda: self._proto.write_pkt_line(b"\x01"))

    def close(self) -> None:
        with self._lock:
            self._enabled = False

    def _write(self, send: Callable[[], None]) -> None:
        with self._lock:
            if not self._enabled:
                return
            try:
                send()
                self._last_write = time.monotonic()
            except Exception as e:  # the client hung up; the deploy goes on without it
                log.warning("git: pusher disconnected, dropping its progress output (%s)", e)
                self._enabled = False


@contextlib.contextmanager
def keepalive(out: SidebandLog, every: float) -> Iterator[None]:
    """Send a keepalive whenever `every` seconds passed without output, until the block ends."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every / 2):
            out.keepalive_if_idle(every)

    thread = threading.Thread(target=run, name="git-keepalive", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def branch_of(ref: bytes) -> str | None:
    return ref[len(b"refs/heads/"):].decode("utf-8", "replace") if ref.startswith(b"refs/heads/") else None


def one_line(text: str) -> bytes:
    """A reason fit for an `ng <ref> <reason>` status line."""
    return " ".join(text.split()).encode("utf-8", "replace")[:1000]


class DeployReceivePackHandler(ReceivePackHandler):
    """Receive-pack that deploys pushes to deploy branches and rejects the ref if that fails."""

    def __init__(self, backend: Backend, args: Sequence[str | bytes], proto: Protocol,
                 stateless_rpc: bool = False, advertise_refs: bool = False, *, push: PushContext):
        super().__init__(backend, args, proto, stateless_rpc=stateless_rpc, advertise_refs=advertise_refs)
        self.push = push
        self._lock_file = None
        self._out: SidebandLog | None = None

    def capabilities(self) -> list[bytes]:
        # No `atomic`: in an atomic push a later ref's failure would un-update main after its
        # release already went live. Without it, `git push --atomic` stops in the client.
        return [cap for cap in super().capabilities() if cap != CAPABILITY_ATOMIC]

    def handle(self) -> None:
        try:
            super().handle()
        except GitProtocolError as e:
            if not isinstance(e.__cause__, (BrokenPipeError, ConnectionResetError)):
                raise
            # Refs are already updated when the status report is written; only the report is lost.
            log.info("git: %s: the pusher hung up before the status report (%s)", self.push.app, e)
        finally:
            self._point_head_at_a_deploy_branch()
            self._finish()

    def _point_head_at_a_deploy_branch(self) -> None:
        """HEAD starts on main; if only master was pushed, move it there so clones check it out."""
        refs = self.repo.refs
        target = refs.get_symrefs().get(b"HEAD")
        if target is None or target in refs:
            return
        for branch in self.push.deploy_branches:
            ref = b"refs/heads/" + branch.encode()
            if ref in refs:
                refs.set_symbolic_ref(b"HEAD", ref)
                return

    @property
    def out(self) -> SidebandLog:
        if self._out is None:
            self._out = SidebandLog(self.proto, self.has_capability(CAPABILITY_SIDE_BAND_64K))
        return self._out

    def _on_update(self, ref: bytes, old_sha: bytes, new_sha: bytes) -> bytes | None:
        hook_error = super()._on_update(ref, old_sha, new_sha)
        if hook_error:
            return hook_error
        branch = branch_of(ref)
        if branch not in self.push.deploy_branches:
            if new_sha != ZERO_SHA:
                self.out.line(f"stored {ref.decode()}; not deploying: only pushes to "
                              f"{' or '.join(self.push.deploy_branches)} deploy")
            return None
        refusal = self._refusal(ref, old_sha, new_sha)
        if refusal:
            self.out.line(f"!      {refusal}")
            return one_line(refusal)
        return self._deploy(ref, old_sha, new_sha)

    def _refusal(self, ref: bytes, old_sha: bytes, new_sha: bytes) -> str | None:
        """Why this deploy-branch update must not even start, or None."""
        app, branch = self.push.app, branch_of(ref)
        if new_sha == ZERO_SHA:
            return f"refusing to delete {branch}: it holds the source of {app}'s releases"
        if not self._take_lock():
            return f"another push to {app} is deploying right now: wait for it to finish, then push again"
        current = self.repo.refs.as_dict().get(ref, ZERO_SHA)
        if current != old_sha:
            return f"{branch} moved since you fetched: run `git pull`, then push again"
        if old_sha != ZERO_SHA and not can_fast_forward(self.repo, old_sha, new_sha):
            return (f"non-fast-forward push to {branch} refused: the running release is built from "
                    f"{old_sha.decode()[:7]}; to go back, use `vcapp rollback {app} N` or push a `git revert`")
        return None

    def _deploy(self, ref: bytes, old_sha: bytes, new_sha: bytes) -> bytes | None:
        app, out = self.push.app, self.out
        out.line(f"-----> Deploying {app} {new_sha.decode()[:7]} ({branch_of(ref)}), pushed by {self.push.who}")
        with tempfile.TemporaryDirectory(prefix=f"vcapp-push-{app}-", dir=self.push.scratch_dir) as tmp:
            try:
                source = checkout_tree(self.repo, new_sha, Path(tmp) / "src")
            except RepoError as e:
                out.line(f"!      {e}")
                return one_line(str(e))
            with keepalive(out, self.push.keepalive_seconds):
                reason = self._run_on_push(ref, old_sha, new_sha, source)
        return None if reason is None else one_line(reason)

    def _run_on_push(self, ref: bytes, old_sha: bytes, new_sha: bytes, source: Path) -> str | None:
        """Call on_push; report its result to the pusher; return the failure reason or None."""
        out = self.out
        finished = threading.Event()

        def log_line(text: str) -> None:  # a builder thread that outlives on_push is ignored
            if not finished.is_set():
                out.line(text)

        try:
            result = self.push.on_push(app=self.push.app, ref=ref.decode(), old_sha=old_sha.decode(),
                                       new_sha=new_sha.decode(), source_dir=source, log=log_line,
                                       who=self.push.who)
            if not isinstance(result, PushResult):
                raise TypeError(f"on_push returned {type(result).__name__}, not PushResult")
        except DeployError as e:
            result = PushResult.failed(str(e), e.kept)
        except Exception as e:
            log.exception("git: on_push for %s crashed", self.push.app)
            result = PushResult.failed(f"internal error {type(e).__name__}: {e} (the server log has the traceback)")
        finally:
            finished.set()
        if not result.ok:
            reason = f"deploy failed: {result.message or 'no reason given'}"
            out.line(f"!      {reason}")
            out.line(f"!      {result.kept or self._kept(old_sha)}; {branch_of(ref)} was not "
                     + ("created" if old_sha == ZERO_SHA else "updated"))
            return reason
        out.line(f"-----> Released v{result.release}" + (f": {result.message}" if result.message else ""))
        if result.url:
            out.line(f"       {result.url}")
        return None

    def _kept(self, old_sha: bytes) -> str:
        """What still runs after a failed deploy, when on_push did not say: the first push to
        the branch had nothing before it."""
        if old_sha == ZERO_SHA:
            return f"{self.push.app} was not deployed by this push"
        return f"{self.push.app} keeps running its previous release"

    def _take_lock(self) -> bool:
        """One deploy per app at a time, across threads and gunicorn workers (flock)."""
        if self._lock_file is not None:
            return True
        f = open(Path(self.repo.controldir()) / LOCK_FILE, "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return False
        self._lock_file = f
        return True

    def _finish(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing drops the flock
            self._lock_file = None
        if self._out is not None:
            self._out.close()
