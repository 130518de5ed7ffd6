"""Fixtures for the git server tests: a real gunicorn serving the git app on 127.0.0.1 and a
real `git` client with an isolated HOME, plus a way to watch a push's stderr live."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gitserver.repos import create_repo

REPO_ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).parent / "gunicorn"
SERVER_START_SECONDS = 20.0  # gunicorn boots two workers importing flask+dulwich: ~1-2 s here
GIT_SECONDS = 30.0  # one git command against loopback; takes well under a second
ZERO = "0" * 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class GitServer:
    url: str  # e.g. http://127.0.0.1:PORT/git
    root: Path
    ctl: Path
    token: str
    log_path: Path

    def remote(self, app: str, token: str | None = "default") -> str:
        token = self.token if token == "default" else token
        host = self.url.removeprefix("http://")
        return f"http://x:{token}@{host}/{app}.git" if token else f"http://{host}/{app}.git"

    def new_app(self) -> str:
        app = "app-" + secrets.token_hex(3)
        create_repo(self.root, app)
        return app

    def set_mode(self, mode: str) -> None:
        (self.ctl / "mode").write_text(mode)
        (self.ctl / "gate-open").unlink(missing_ok=True)

    def calls(self, app: str) -> list[dict]:
        records = [json.loads(p.read_text()) for p in sorted((self.ctl / "calls").glob("*.json"),
                                                              key=lambda p: int(p.stem))]
        return [r for r in records if r["app"] == app]

    def refs(self, app: str) -> dict[str, str]:
        from dulwich.repo import Repo
        with Repo(str(self.root / f"{app}.git")) as repo:
            return {k.decode(): v.decode() for k, v in repo.get_refs().items() if k != b"HEAD"}


@pytest.fixture(scope="module")
def git_server_process(tmp_path_factory) -> GitServer:
    base = tmp_path_factory.mktemp("gitserver")
    root, ctl = base / "repos", base / "ctl"
    root.mkdir()
    ctl.mkdir()
    port = free_port()
    token = "tok-" + secrets.token_hex(12)
    log_path = base / "server.log"
    env = dict(os.environ, GITTEST_ROOT=str(root), GITTEST_CTL=str(ctl), GITTEST_TOKEN=token)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(GUNICORN), "--no-control-socket", "-k", "gthread", "--threads", "4", "-w", "2",
             "-b", f"127.0.0.1:{port}", "--access-logfile", "-", "--log-level", "info",
             "tests.gitserver.scripted_deploy:create_app()"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(port, proc, log_path)
        yield GitServer(f"http://127.0.0.1:{port}/git", root, ctl, token, log_path)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def git_server(git_server_process) -> GitServer:
    """The module's server, its scripted deploy reset to a plain successful release."""
    git_server_process.set_mode("release")
    return git_server_process


def wait_healthy(port: int, proc: subprocess.Popen, log_path: Path) -> None:
    import urllib.request
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"gunicorn exited {proc.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"gunicorn not serving after {SERVER_START_SECONDS}s:\n{log_path.read_text()}")


@pytest.fixture(scope="module")
def git_env(tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("home")
    return dict(os.environ, HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0",
                GIT_ASKPASS="", SSH_ASKPASS="", GIT_AUTHOR_NAME="Ada", GIT_AUTHOR_EMAIL="ada@example.test",
                GIT_COMMITTER_NAME="Ada", GIT_COMMITTER_EMAIL="ada@example.test", LC_ALL="C")


@dataclass
class Git:
    env: dict[str, str]

    def __call__(self, *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["git", *args], cwd=cwd, env=self.env, capture_output=True, text=True,
                              timeout=GIT_SECONDS)
        if check and proc.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
        return proc

    def head(self, cwd: Path) -> str:
        return self("rev-parse", "HEAD", cwd=cwd).stdout.strip()

    def commit_files(self, cwd: Path, files: dict[str, str], message: str = "change") -> str:
        for name, text in files.items():
            (cwd / name).parent.mkdir(parents=True, exist_ok=True)
            (cwd / name).write_text(text)
        self("add", "-A", cwd=cwd)
        self("commit", "-q", "-m", message, cwd=cwd)
        return self.head(cwd)

    def workdir(self, parent: Path, remote: str) -> Path:
        """A fresh clone of remote (an empty app clones fine), on branch main."""
        work = parent / ("w-" + secrets.token_hex(3))
        self("clone", "-q", remote, str(work), cwd=parent)
        if self("rev-parse", "--verify", "-q", "HEAD", cwd=work, check=False).returncode != 0:
            self("checkout", "-q", "-b", "main", cwd=work)
        return work


@pytest.fixture(scope="module")
def git(git_env) -> Git:
    return Git(git_env)


@dataclass
class LivePush:
    """A `git push` running in the background; its stderr lines with the time each arrived."""

    proc: subprocess.Popen
    lines: list[tuple[float, str]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def read(self) -> None:
        buf = b""
        while chunk := self.proc.stderr.read1(4096):
            buf += chunk
            *complete, buf = re.split(rb"[\r\n]", buf)
            with self.cond:
                self.lines += [(time.time(), c.decode(errors="replace").rstrip()) for c in complete if c.strip()]
                self.cond.notify_all()
        with self.cond:
            if buf.strip():
                self.lines.append((time.time(), buf.decode(errors="replace").rstrip()))
            self.cond.notify_all()

    def wait_line(self, pattern: str, timeout: float) -> tuple[float, str]:
        with self.cond:
            ok = self.cond.wait_for(lambda: self._find(pattern) or self.proc.poll() is not None, timeout)
            found = self._find(pattern)
        if not found:
            raise AssertionError(f"no stderr line matching {pattern!r} within {timeout}s (ok={ok}):\n{self.text()}")
        return found

    def _find(self, pattern: str) -> tuple[float, str] | None:
        return next(((t, line) for t, line in self.lines if re.search(pattern, line)), None)

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def hang_up(self) -> None:
        """Kill git and its git-remote-http helper (which holds the connection), like Ctrl-C."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def finish(self, timeout: float = GIT_SECONDS) -> int:
        rc = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=5)
        return rc


@pytest.fixture
def live_push(git_env):
    started: list[LivePush] = []

    def start(cwd: Path, *args: str) -> LivePush:
        proc = subprocess.Popen(["git", "push", *args], cwd=cwd, env=git_env, stderr=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, start_new_session=True)
        push = LivePush(proc)
        push.reader = threading.Thread(target=push.read, daemon=True)
        push.reader.start()
        started.append(push)
        return push

    yield start
    for push in started:
        push.hang_up()
