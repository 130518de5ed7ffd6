"""The git endpoint as a WSGI app: `create_git_app(config)`, mountable at `/git`.

Owns request routing (`/<app>.git/...` → that app's repository), the clear error for an
unknown app, and wiring dulwich's smart-HTTP server to our deploying receive-pack. Every
request is authenticated first (auth.BasicAuth), so nothing, not even whether an app
exists, is visible without a token.

Serve it with a threaded server so progress streams while a build runs: gunicorn
`-k gthread` (a sync worker would be killed by gunicorn's worker timeout during a long
build and buffers nothing, but serves one push at a time), or werkzeug's threaded server.
The control plane mounts it under its Flask API, e.g.
`DispatcherMiddleware(flask_app.wsgi_app, {"/git": create_git_app(config)})`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from dulwich.errors import NotGitRepository
from dulwich.server import Backend
from dulwich.web import make_wsgi_chain

from gitserver.auth import WHO_KEY, Authenticate, BasicAuth
from gitserver.push import DEPLOY_BRANCHES, KEEPALIVE_SECONDS, DeployReceivePackHandler, OnPush, PushContext
from gitserver.repos import RepoError, open_repo

GIT_PATH = re.compile(r"^/(?P<app>[^/]+)\.git(?P<rest>/.*)$")


@dataclass(frozen=True)
class GitConfig:
    """How the git endpoint is wired to the rest of vcapp.

    root: directory holding `<app>.git` repositories (see repos.create_repo).
    authenticate: token -> who (e.g. the admin token's name), or None to refuse.
    on_push: the deploy callable (see push.OnPush), run for pushes to deploy_branches.
    """

    root: Path
    authenticate: Authenticate
    on_push: OnPush
    deploy_branches: tuple[str, ...] = DEPLOY_BRANCHES
    keepalive_seconds: float = KEEPALIVE_SECONDS
    scratch_dir: str | None = None


def text_response(start_response: Callable, status: str, message: str) -> list[bytes]:
    """A plain-text error; git prints a text/plain body as `remote: <message>`."""
    body = (message + "\n").encode("utf-8")
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


def unwrap_chunked_input(environ: dict) -> None:
    """Stop dulwich from de-chunking a body the WSGI server already de-chunked.

    git sends pushes over 1 MiB (http.postBuffer) with `Transfer-Encoding: chunked`;
    gunicorn, cheroot and werkzeug decode that themselves and say so with `wsgi.input_terminated`.
    """
    if environ.get("wsgi.input_terminated") and environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        del environ["HTTP_TRANSFER_ENCODING"]


BODY_IN_MEMORY = 1 << 20  # a fetch's wants and haves fit; a push's pack past this goes to a file


def read_body_first(environ: dict) -> None:
    """Hand dulwich a request body that is already all here.

    dulwich answers a fetch's `have` lines (ACK/NAK) before it has read the rest of the
    request; a WSGI server may drop the unread rest of the body the moment the response
    starts (cheroot drains it to keep the connection usable), and dulwich then sees the
    body end early (a fetch with haves failed with "HangupException"). So the body is read
    into a spooled file first, to its end.
    """
    length = environ.get("CONTENT_LENGTH", "")
    terminated = bool(environ.get("wsgi.input_terminated"))
    if environ.get("REQUEST_METHOD") != "POST" or environ.get("HTTP_TRANSFER_ENCODING") or \
            not (length.isdigit() or terminated):
        return  # no body, or one still chunked on the wire: dulwich reads it as it comes
    body = tempfile.SpooledTemporaryFile(max_size=BODY_IN_MEMORY)
    source = environ["wsgi.input"]
    if length.isdigit():
        remaining = int(length)
        while remaining > 0:
            chunk = source.read(min(remaining, 1 << 16))
            if not chunk:
                break
            body.write(chunk)
            remaining -= len(chunk)
    else:
        shutil.copyfileobj(source, body, 1 << 16)
    environ["CONTENT_LENGTH"] = str(body.tell())
    body.seek(0)
    environ["wsgi.input"] = body


class AppsBackend(Backend):
    """dulwich backend: the URL prefix `/<app>.git` names `<root>/<app>.git`, nothing else.

    (dulwich's FileSystemBackend joins the absolute prefix onto its root, which drops the
    root; and going through repos keeps one place that decides what an app path is.)
    """

    def __init__(self, root: Path):
        self.root = root

    def open_repository(self, path: str | bytes):
        match = re.fullmatch(r"/?(?P<app>[^/]+)\.git", os.fsdecode(path))
        if not match:
            raise NotGitRepository(f"not an app repository path: {path!r}")
        try:
            return open_repo(self.root, match["app"])
        except RepoError as e:
            raise NotGitRepository(str(e)) from e


class GitApp:
    """Routes an authenticated request to the app's repository through dulwich."""

    def __init__(self, config: GitConfig):
        self.config = config
        self.backend = AppsBackend(config.root)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        match = GIT_PATH.match(environ.get("PATH_INFO", ""))
        if not match:
            return text_response(start_response, "404 Not Found",
                                 "not a repository URL: use <api>/git/<app>.git (`vcapp apps create` prints it)")
        app = match["app"]
        try:
            open_repo(self.config.root, app).close()
        except RepoError as e:
            return text_response(start_response, "404 Not Found", str(e))
        unwrap_chunked_input(environ)
        read_body_first(environ)
        return self._dulwich(app, environ[WHO_KEY])(environ, start_response)

    def _dulwich(self, app: str, who: str) -> Callable:
        """dulwich's smart-HTTP app, with receive-pack bound to this push's app and pusher."""
        push = PushContext(app=app, who=who, on_push=self.config.on_push,
                           deploy_branches=self.config.deploy_branches,
                           keepalive_seconds=self.config.keepalive_seconds,
                           scratch_dir=self.config.scratch_dir)
        handlers = {b"git-receive-pack": partial(DeployReceivePackHandler, push=push)}
        return make_wsgi_chain(self.backend, handlers=handlers)


def create_git_app(config: GitConfig) -> Callable:
    """The WSGI app serving `/<app>.git/...` for every repository under config.root."""
    return BasicAuth(GitApp(config), config.authenticate)
