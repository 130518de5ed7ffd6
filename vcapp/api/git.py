"""The git endpoint inside the API server: `/git/<app>.git` on every machine.

`mount(flask_app, config)` dispatches `/git` to gitserver's smart-HTTP app with the admin
token as the HTTP password (membership.authenticate_admin) and vcapp.deploy.pipeline as the push hook.
Repositories live on the local disk of each machine under <data dir>/git, kept the same on
every machine by vcapp/state/reposync.py: before a request is served here the local repository
catches up with the branches recorded in etcd (fetched from a machine that has them), and
after a push here this machine's branches become the record. Machines fetch from each other
with a credential derived from the cluster key that may only fetch.
"""

from __future__ import annotations

import logging
import re
from typing import Callable, Iterable

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from gitserver import GitConfig, create_git_app
from gitserver.auth import basic_password
from gitserver.repos import RepoError, repo_path
from gitserver.wsgi import text_response
from vcapp.api.config import ApiConfig
from vcapp.deploy import pipeline
from vcapp.errors import VcError
from vcapp.machine import data_dir
from vcapp.state import apps, keys, membership, reposync
from vcapp.state.store import StoreUnavailable

log = logging.getLogger("vcapp.api.git")
APP_IN_PATH = re.compile(r"^/(?P<app>[^/]+)\.git/")
RECEIVE_PACK = "git-receive-pack"


def _cluster_key(config: ApiConfig) -> bytes | None:
    try:
        return config.cluster_key() if config.cluster_key else None
    except OSError:
        return None


def authenticator(config: ApiConfig) -> Callable[[str], str | None]:
    """token -> the admin token's name (or the machine sync user), or None (git then asks
    for credentials again)."""
    def authenticate(token: str) -> str | None:
        if reposync.is_sync_secret(token, _cluster_key(config)):
            return reposync.SYNC_USER
        try:
            return membership.authenticate_admin(config.store(), token)
        except VcError:
            return None
    return authenticate


class RepoOnDemand:
    """Around gitserver: make the local repository of an existing app, bring it up to date
    with the cluster's record before serving, and record it after a push (authenticated only)."""

    def __init__(self, app: Callable, config: ApiConfig, root_of: Callable):
        self.app, self.config, self.root_of = app, config, root_of

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        match = APP_IN_PATH.match(environ.get("PATH_INFO", ""))
        token = basic_password(environ.get("HTTP_AUTHORIZATION"))
        who = authenticator(self.config)(token) if token else None
        if not match or who is None:
            return self.app(environ, start_response)  # gitserver answers 404 / 401 itself
        name = match["app"]
        pushing = environ.get("PATH_INFO", "").endswith("/" + RECEIVE_PACK) or \
            f"service={RECEIVE_PACK}" in environ.get("QUERY_STRING", "")
        if who == reposync.SYNC_USER and pushing:
            return text_response(start_response, "403 Forbidden", "the machine sync credential may only fetch")
        try:
            if not self._ensure(name):
                return self.app(environ, start_response)
            if who != reposync.SYNC_USER:  # a machine fetching is asked only for what it holds
                self._catch_up(name)
        except (VcError, StoreUnavailable) as e:
            return text_response(start_response, "503 Service Unavailable", getattr(e, "message", str(e)))
        body = self.app(environ, start_response)
        if pushing and environ.get("REQUEST_METHOD") == "POST":
            return self._then_publish(body, name)
        return body

    def _ensure(self, name: str) -> bool:
        """The local repository of the current app exists (made now for an existing app, made
        afresh when the one here belongs to a destroyed app of the same name); False: the app
        does not exist, and its repository here (if any) is gone: let gitserver say why not."""
        root = self.root_of()
        try:
            entry = self.config.store().get(keys.app(apps.app_name(name)))
            if entry is None:
                reposync.remove_local(root, name)
                return False
            if (repo_path(root, name) / "HEAD").is_file() and \
                    reposync.generation(root, name) in (None, entry.create_revision):
                return True
            reposync.fresh_repo(root, name, entry.create_revision)
            log.info("git: made the local repository of app %s under %s", name, root)
            return True
        except RepoError:
            return (repo_path(root, name) / "HEAD").is_file()  # a race with another worker
        except VcError:
            return False  # not an app name: gitserver says so

    def _catch_up(self, name: str) -> None:
        store = self.config.store()
        key = _cluster_key(self.config)
        if key is None:
            return
        reposync.catch_up(store, name, self.root_of(), self.config.node, reposync.live_apis(store),
                          reposync.sync_secret(key))

    def _then_publish(self, body: Iterable[bytes], name: str) -> Iterable[bytes]:
        try:
            yield from body
        finally:
            close = getattr(body, "close", None)
            if close:
                close()
            try:
                reposync.publish(self.config.store(), name, self.root_of(), self.config.node)
            except Exception:  # the push itself is done; the sync loop records it next pass
                log.exception("git: could not record the branches of %s after a push", name)


def git_app(config: ApiConfig) -> Callable:
    root = data_dir() / "git"
    app = create_git_app(GitConfig(root=root, authenticate=authenticator(config),
                                   on_push=pipeline.on_push_for(config.store)))
    return RepoOnDemand(app, config, lambda: root)


def mount(flask_app: Flask, config: ApiConfig) -> None:
    """Serve the git endpoint at /git beside the API routes."""
    flask_app.wsgi_app = DispatcherMiddleware(flask_app.wsgi_app, {"/git": git_app(config)})
