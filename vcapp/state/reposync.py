"""App repositories on every machine: which branches an app's repository has (in etcd) and
copying them between machines, so every machine's git endpoint (api.D sends a push to any
of them) serves the same history, and losing the machine that received a push loses no
commit.

    /vc/repos/<app>  {"refs": {"refs/heads/main": "<sha>", ...}, "holders": ["home-1"], "at": t}

- after a push is handled here, `publish` records this machine's branches (holders: here);
- before any git request is served here, `catch_up` fetches what the record names from a
  live holder (dulwich's HTTP client with a machine credential that may only fetch) and
  moves the local branches to match;
- every machine's sync loop (vcapp/node/repos_loop.py) catches up in the background, so a
  push is on every live machine seconds after it lands.
A machine that cannot catch up (no holder answers) refuses to serve the repository rather
than serve an old history. Two pushes of one app landing on two machines at the same moment
are not serialised cluster-wide: the later record wins (the per-machine deploy lock covers
one machine only).

Each local repository carries the generation of the app it belongs to (GENERATION_FILE: the
create revision of /vc/apps/<app>, which a destroy and a re-create change): a repository of
a destroyed app, or of an earlier app of the same name, is removed by every machine's sync
loop (`prune`) and never served (vcapp/api/git.py), so no history of a destroyed app
reaches a new app with its name.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import logging
import secrets
import shutil
import time
from pathlib import Path
from typing import Iterator

from dulwich.client import HttpGitClient
from dulwich.graph import can_fast_forward
from dulwich.repo import Repo

from gitserver.repos import AppExists, create_repo, open_repo, repo_path
from vcapp.errors import VcError
from vcapp.machine import derive
from vcapp.state import keys, membership
from vcapp.state.store import Store, absent, put_op, unchanged

log = logging.getLogger("vcapp.reposync")

GENERATION_FILE = "vcapp-generation"  # in the bare repository: its app's create revision
SYNC_USER = "vcapp-sync"  # the machine credential's user name; its password is sync_secret()
FETCH_TIMEOUT = 30.0  # one fetch from a peer: the objects a push added, over the cluster network
LOCK_FILE = "vcapp-sync.lock"


class RepoBehind(VcError):
    status = 503


def sync_secret(cluster_key: bytes) -> str:
    """What machines fetch from each other with; derived from the cluster key, never stored."""
    return derive(cluster_key, "git-sync").hex()


def is_sync_secret(token: str, cluster_key: bytes | None) -> bool:
    return bool(cluster_key) and hmac.compare_digest(token.encode(), sync_secret(cluster_key).encode())


def local_branches(repo: Repo) -> dict[str, str]:
    return {ref.decode(): sha.decode() for ref, sha in repo.get_refs().items() if ref.startswith(b"refs/heads/")}


def publish(store: Store, app: str, root: Path, node: str) -> None:
    """Record this machine's branches of `app` as the current ones, after a push here."""
    repo = open_repo(root, app)
    try:
        refs = local_branches(repo)
    finally:
        repo.close()
    entry = store.get(keys.repo(app))
    if entry is not None and (entry.value or {}).get("refs") == refs:
        _join_holders(store, app, node, entry)
        return
    # Only for the app this repository belongs to: a push that ends after its app was destroyed
    # (and perhaps made again) must not hand its branches to the new app's record.
    app_entry = store.get(keys.app(app))
    mine = generation(root, app)
    if app_entry is None or mine not in (None, app_entry.create_revision):
        log.info("repository of %s: not recorded, its app was destroyed during the push", app)
        return
    if not store.txn([_created_at(keys.app(app), app_entry.create_revision)],
                     [put_op(keys.repo(app), {"refs": refs, "holders": [node], "at": time.time()})]):
        log.info("repository of %s: not recorded, its app was destroyed during the push", app)
        return
    log.info("repository of %s: branches %s recorded", app, ", ".join(f"{r}={s[:7]}" for r, s in sorted(refs.items())))


def _created_at(key: str, revision: int) -> dict:
    """Compare: `key` exists and was created at `revision` (absent() with a revision)."""
    return dict(absent(key), create_revision=str(revision))


def catch_up(store: Store, app: str, root: Path, node: str, peers: dict[str, str], secret: str) -> bool:
    """Make this machine's repository of `app` match its record; True if anything changed.
    peers: live machine -> "addr:port" of its API; secret: sync_secret(). RepoBehind when no
    holder can provide the commits."""
    entry = store.get(keys.repo(app))
    if entry is None:
        return False
    want = (entry.value or {}).get("refs") or {}
    with _locked(root, app):
        repo = open_repo(root, app)
        try:
            same, ahead = local_branches(repo) == want, _ahead(repo, want)
            if not same and not ahead:
                missing = {sha for sha in want.values() if sha.encode() not in repo.object_store}
                if missing:
                    _fetch(app, repo, want, missing, _holders(entry.value, node, peers), peers, secret)
                _set_branches(repo, want)
        finally:
            repo.close()
    if ahead and not same:  # a push here whose record was never written: record it, do not undo it
        publish(store, app, root, node)
        return False
    changed = not same
    _join_holders(store, app, node, entry)
    if changed:
        log.info("repository of %s caught up: %s", app, ", ".join(f"{r}={s[:7]}" for r, s in sorted(want.items())))
    return changed


def _ahead(repo: Repo, want: dict[str, str]) -> bool:
    """Every recorded branch is here, at its recorded commit or a descendant of it."""
    local = local_branches(repo)
    for ref, sha in want.items():
        mine = local.get(ref)
        if mine is None or (mine != sha and (sha.encode() not in repo.object_store
                                             or not can_fast_forward(repo, sha.encode(), mine.encode()))):
            return False
    return True


def _holders(record: dict, node: str, peers: dict[str, str]) -> list[str]:
    return [h for h in record.get("holders") or () if h != node and h in peers]


def _fetch(app: str, repo: Repo, want: dict[str, str], missing: set[str], holders: list[str],
           peers: dict[str, str], secret: str) -> None:
    tried = []
    for holder in holders:
        client = HttpGitClient(f"http://{peers[holder]}/git/", username=SYNC_USER, password=secret,
                               timeout=FETCH_TIMEOUT, quiet=True)

        def wanted(refs: dict, depth: int | None = None) -> list[bytes]:
            return [sha for ref, sha in refs.items() if want.get(ref.decode()) == sha.decode()
                    and sha.decode() in missing]

        try:
            client.fetch(f"{app}.git", repo, determine_wants=wanted)
        except Exception as e:  # that machine is going down or behind itself: ask the next
            tried.append(f"{holder} ({type(e).__name__})")
            continue
        if all(sha.encode() in repo.object_store for sha in missing):
            return
        tried.append(f"{holder} (does not have them)")
    raise RepoBehind(f"{app}'s repository: its latest commits are on machines that do not answer"
                     f"{': ' + ', '.join(tried) if tried else ' (none of its holders is up)'}; "
                     "try again once one is back (`vcapp nodes` shows which are down)")


def _set_branches(repo: Repo, want: dict[str, str]) -> None:
    for ref in set(local_branches(repo)) - set(want):
        del repo.refs[ref.encode()]
    for ref, sha in want.items():
        repo.refs[ref.encode()] = sha.encode()
    head = repo.refs.get_symrefs().get(b"HEAD")
    if head is not None and head.decode() not in want and "refs/heads/master" in want:
        repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/master")


def _join_holders(store: Store, app: str, node: str, entry) -> None:
    record = dict(entry.value or {})
    if node in (record.get("holders") or []):
        return
    record["holders"] = sorted({*(record.get("holders") or []), node})
    # Only onto the record that was caught up to: a newer push since then has its own holders.
    store.txn([unchanged(keys.repo(app), entry.mod_revision)], [put_op(keys.repo(app), record)])


@contextlib.contextmanager
def _locked(root: Path, app: str) -> Iterator[None]:
    """One catch-up of a repository at a time on this machine (API workers and the daemon)."""
    path = Path(root) / f"{app}.git" / LOCK_FILE
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def generation(root: Path, app: str) -> int | None:
    """The app generation this machine's repository of `app` was made for (None: unknown,
    a repository made before generations were kept)."""
    return _generation_at(repo_path(root, app))


def _generation_at(path: Path) -> int | None:
    try:
        return int((path / GENERATION_FILE).read_text())
    except (OSError, ValueError):
        return None


def fresh_repo(root: Path, app: str, app_generation: int) -> Path:
    """An empty repository of `app` for its generation `app_generation`, replacing whatever
    repository of that name this machine kept."""
    remove_local(root, app)
    try:
        path = create_repo(root, app)
    except AppExists:  # made meanwhile by another worker for the same app
        path = repo_path(root, app)
    (path / GENERATION_FILE).write_text(str(app_generation))
    return path


def remove_local(root: Path, app: str) -> bool:
    """Remove this machine's repository of `app`, if any."""
    return _remove(repo_path(root, app))


def _remove(path: Path) -> bool:
    """Renamed away first (atomic: a git request never sees half a repository), then deleted."""
    doomed = path.with_name(f".{path.name}.removed-{secrets.token_hex(4)}")
    try:
        path.rename(doomed)
    except FileNotFoundError:
        return False  # absent, or removed meanwhile
    shutil.rmtree(doomed, ignore_errors=True)
    log.info("repository %s removed", path)
    return True


def prune(root: Path, apps: dict[str, int]) -> list[str]:
    """Remove this machine's repositories that belong to no current app (`apps`: each app's
    generation): its app is gone, or was destroyed and made again. A repository without a
    generation belongs to its app if the app exists. Answers the names removed.

    A repository made for a new app between the caller's read of `apps` and this removal is
    removed too; the git endpoint makes an app's missing repository again on its next request."""
    removed = []
    for path in sorted(Path(root).glob("*.git")) if Path(root).is_dir() else []:
        app = path.name[: -len(".git")]
        mine = _generation_at(path) if app in apps else None
        if (app not in apps or mine not in (None, apps[app])) and _remove(path):
            removed.append(app)
    return removed


def behind(store: Store, node: str) -> list[str]:
    """The apps whose repository record does not name `node` among its holders."""
    return [keys.name_of(e.key, keys.REPOS) for e in store.list(keys.REPOS)
            if node not in ((e.value or {}).get("holders") or [])]


def live_apis(store: Store) -> dict[str, str]:
    """Live machine -> "addr:port" of its API (from the node records' api_url)."""
    alive = membership.alive_machines(store)
    found = {name: membership.api_addr(record) for name, record in membership.node_records(store).items()}
    return {name: addr for name, addr in found.items() if addr and name in alive}
