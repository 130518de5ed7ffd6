"""gitserver: the smart-HTTP git server; a push to main starts a build and streams its log
back on the git side-band.

Owns: app repositories and push authentication. Must not touch: image building (it asks
builder/), containers or placement.

Interface for the control plane:

    create_repo(root, app) -> Path                 on `vcapp apps create` (repos.py)
    create_git_app(GitConfig(root, authenticate, on_push)) -> WSGI app, mounted at /git (wsgi.py)
    on_push(*, app, ref, old_sha, new_sha, source_dir, log, who) -> PushResult   (push.py)
        raise DeployError("message") or return PushResult.failed("message") to reject the push
"""

from gitserver.push import DeployError, PushResult
from gitserver.repos import create_repo
from gitserver.wsgi import GitConfig, create_git_app

__all__ = ["DeployError", "GitConfig", "PushResult", "create_git_app", "create_repo"]
