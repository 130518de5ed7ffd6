"""App repositories on disk: one bare git repository per app, `<root>/<app>.git`.

Owns app-name validation for repository paths, creating and finding repositories, and
materialising a pushed commit's tree into a plain directory for the builder. Nothing here
speaks HTTP or the git protocol.

Where they live: on the local disk of the machine that serves the git endpoint, under the
root the caller configures. The control plane keeps a copy on every machine
(vcapp/state/reposync.py); nothing here knows about that.
"""

from __future__ import annotations

import re
from pathlib import Path

from dulwich.index import InvalidPathError, build_index_from_tree
from dulwich.objects import Commit
from dulwich.repo import Repo

# Same shape as a DNS label, because the app name becomes the app's subdomain.
APP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$|^[a-z]$")
DEFAULT_BRANCH = b"main"


class RepoError(Exception):
    """A repository problem a person can act on; the message says what to do."""


class InvalidAppName(RepoError):
    pass


class NoSuchApp(RepoError):
    def __init__(self, app: str):
        super().__init__(f"no app named {app}: create it with `vcapp apps create {app}`")
        self.app = app


class AppExists(RepoError):
    pass


def validate_app_name(app: str) -> str:
    """Return app unchanged if it can name a repository and a subdomain; raise otherwise."""
    if not APP_NAME.fullmatch(app):  # whole: `$` would pass "x\n" (a repository "x\n.git")
        raise InvalidAppName(
            f"{app!r} is not a valid app name: use 1-63 lowercase letters, digits and '-', "
            "starting with a letter and not ending with '-'"
        )
    return app


def repo_path(root: str | Path, app: str) -> Path:
    """Where app's bare repository lives under root (it may not exist)."""
    return Path(root) / f"{validate_app_name(app)}.git"


def create_repo(root: str | Path, app: str) -> Path:
    """Create the empty bare repository for a new app, HEAD on `main`; return its path.

    Raises AppExists if the app already has one (the caller decides whether that is an error).
    """
    path = repo_path(root, app)
    if path.exists():
        raise AppExists(f"app {app} already has a repository at {path}")
    Path(root).mkdir(parents=True, exist_ok=True)
    Repo.init_bare(path, mkdir=True, default_branch=DEFAULT_BRANCH).close()
    return path


def open_repo(root: str | Path, app: str) -> Repo:
    """Open app's repository; NoSuchApp if it was never created."""
    path = repo_path(root, app)
    if not (path / "HEAD").is_file():
        raise NoSuchApp(app)
    return Repo(str(path))


def checkout_tree(repo: Repo, commit_sha: bytes, dest: Path) -> Path:
    """Write the files of commit_sha's tree into dest (an empty directory); return dest.

    dulwich does the writing: it keeps exec bits and symlinks and refuses `..` and `.git`
    path elements, so a hostile tree cannot write outside dest. The scratch index goes
    beside dest, not into it, so the builder sees exactly the pushed files.
    """
    commit = repo[commit_sha]
    if not isinstance(commit, Commit):
        raise RepoError(f"{commit_sha.decode()} is not a commit: push a branch, not a tag or tree")
    dest.mkdir(parents=True, exist_ok=True)
    index_path = dest.parent / (dest.name + ".index")
    try:
        build_index_from_tree(str(dest), str(index_path), repo.object_store, commit.tree)
    except InvalidPathError as e:
        raise RepoError(f"the pushed tree has a path that cannot be checked out safely ({e}): "
                        "remove it from the commit and push again") from e
    finally:
        index_path.unlink(missing_ok=True)
    return dest
