"""The git endpoint inside the API server: `/git/<app>.git` on every machine.

`mount(flask_app, config)` dispatches `/git` to gitserver's smart-HTTP app with the admin
token as the HTTP password (membership.authenticate_admin) and vcapp.deploy as the push hook.
Repositories live on the local disk of each machine under <data dir>/git (`vcapp apps
create` makes one where it is served). A push to a machine that has no repository yet for
an existing app gets one made there first, so any machine's API takes the push; the history
then lives on that machine (replicated once storage lands).
"""

from __future__ import annotations

import logging
import re
from typing import Callable, Iterable

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from gitserver import GitConfig, create_git_app
from gitserver.auth import basic_password
from gitserver.repos import RepoError, create_repo, repo_path
from vcapp import apps, deploy, membership
from vcapp.api.config import ApiConfig
from vcapp.errors import VcError
from vcapp.node.config import data_dir

log = logging.getLogger("vcapp.api.git")
APP_IN_PATH = re.compile(r"^/(?P<app>[^/]+)\.git/")


def authenticator(config: ApiConfig) -> Callable[[str], str | None]:
    """token -> the admin token's name, or None (git then asks for credentials again)."""
    def authenticate(token: str) -> str | None:
        try:
            return membership.authenticate_admin(config.store(), token)
        except VcError:
            return None
    return authenticate


class RepoOnDemand:
    """Make the local repository of an existing app before git asks for it (authenticated only)."""

    def __init__(self, app: Callable, config: ApiConfig, root_of: Callable):
        self.app, self.config, self.root_of = app, config, root_of

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        match = APP_IN_PATH.match(environ.get("PATH_INFO", ""))
        if match:
            self._ensure(match["app"], environ)
        return self.app(environ, start_response)

    def _ensure(self, name: str, environ: dict) -> None:
        root = self.root_of()
        try:
            if (repo_path(root, name) / "HEAD").is_file():
                return
            token = basic_password(environ.get("HTTP_AUTHORIZATION"))
            if not token or authenticator(self.config)(token) is None:
                return  # gitserver answers 401 itself
            apps.get_app(self.config.store(), name)
            create_repo(root, name)
            log.info("git: made the local repository of app %s under %s", name, root)
        except (RepoError, VcError):
            return  # AppExists (a race), a bad name or an unknown app: gitserver says so


def git_app(config: ApiConfig) -> Callable:
    root = data_dir() / "git"
    app = create_git_app(GitConfig(root=root, authenticate=authenticator(config),
                                   on_push=deploy.on_push_for(config.store)))
    return RepoOnDemand(app, config, lambda: root)


def mount(flask_app: Flask, config: ApiConfig) -> None:
    """Serve the git endpoint at /git beside the API routes."""
    flask_app.wsgi_app = DispatcherMiddleware(flask_app.wsgi_app, {"/git": git_app(config)})
