"""Destroying an app leaves nothing that opens, or leaks into, a new app with its name: its
end-user access tokens, secrets, domains, release records, metrics and repository (on this
machine at once, on every other by its repository loop) go in one etcd transaction; an app
with stored data (volumes, a bucket) is refused without confirmation, or with its storage
unreachable, and changes nothing (tests/storage/test_volumes_cluster.py destroys one for real).

Real parts: etcd, the admin API (Flask test client, its git endpoint included), dulwich
repositories on disk and the node router's forward_auth decision over the real token lookup."""

from __future__ import annotations

import base64
import shutil
import time
from types import SimpleNamespace

import pytest
from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import Repo

from router.auth import AuthService
from router.tokencheck import TokenChecker
from router.tokens import hash_token
from tests.api.conftest import CLUSTER_KEY, bearer
from vcapp.api.app import ApiConfig, create_app
from vcapp.node.repos_loop import RepoSyncLoop
from vcapp.state import apptokens, keys, releases, reposync

pytestmark = pytest.mark.cluster

SESSION_KEY = b"s" * 32


@pytest.fixture
def api(etcd_url, node_dir):
    return create_app(ApiConfig.for_endpoints([etcd_url], "home-1", lambda: CLUSTER_KEY)).test_client()


def commit_to(root, app: str, text: bytes) -> str:
    """A commit on main in `app`'s repository, as a push leaves it; its sha."""
    repo = Repo(str(root / f"{app}.git"))
    try:
        blob = Blob.from_string(text)
        tree = Tree()
        tree.add(b"app.py", 0o100644, blob.id)
        commit = Commit()
        commit.tree = tree.id
        commit.author = commit.committer = b"t <t@example.org>"
        commit.author_time = commit.commit_time = int(time.time())
        commit.author_timezone = commit.commit_timezone = 0
        commit.message = b"old app\n"
        for obj in (blob, tree, commit):
            repo.object_store.add_object(obj)
        repo.refs[b"refs/heads/main"] = commit.id
        return commit.id.decode()
    finally:
        repo.close()


def router_answer(store, token: str, app: str = "blog") -> str:
    """What a node router's token check answers a visitor of `app` showing `token` (fresh cache)."""
    service = AuthService(TokenChecker(lambda token_hash: apptokens.lookup(store, token_hash)), SESSION_KEY)
    return service.decide(app, "/", f"Bearer {token}", "").status


def refs_served(api, cluster, app: str = "blog") -> bytes:
    auth = base64.b64encode(f"git:{cluster.admin}".encode()).decode()
    response = api.get(f"/git/{app}.git/info/refs?service=git-upload-pack",
                       headers={"Authorization": f"Basic {auth}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data()


def under(store, prefix: str, app: str | None = None) -> list[str]:
    return [e.key for e in store.list(prefix) if app is None or (e.value or {}).get("app") == app]


def test_a_destroyed_apps_tokens_history_and_repository_do_not_reach_a_new_app_of_its_name(
        api, cluster, node_dir, tmp_path):
    store, admin = cluster.store, bearer(cluster.admin)
    root = node_dir / "git"
    assert api.post("/v1/apps", json={"name": "blog"}, headers=admin).status_code == 201
    assert api.put("/v1/apps/blog/access", json={"policy": "token"}, headers=admin).status_code == 200
    assert api.post("/v1/apps/blog/domains", json={"host": "www.blog.org"}, headers=admin).status_code == 201
    assert api.put("/v1/apps/blog/secrets", json={"secrets": {"DB_URL": "postgres://old"}},
                   headers=admin).status_code == 200
    created = api.post("/v1/apps/blog/tokens", json={"name": "alice", "expires": "30d"}, headers=admin)
    assert created.status_code == 201, created.json
    old_token = created.json["token"]
    old_sha = commit_to(root, "blog", b"print('old')\n")
    reposync.publish(store, "blog", root, "home-1")
    releases.record_next(store, "blog", {"sha": old_sha, "image": "10.0.0.1:5000/apps/blog:1",
                                         "status": "released", "time": time.time()})
    store.put(keys.metrics("app/blog") + "minute/0", {"points": [1]})
    other = tmp_path / "home-2" / "git"  # another machine's copy, made by its repository loop
    shutil.copytree(root, other)
    stale_here = tmp_path / "stale-blog.git"  # this machine's copy, as a machine that missed the destroy keeps it
    shutil.copytree(root / "blog.git", stale_here)
    assert router_answer(store, old_token) == "200 OK"
    assert old_sha.encode() in refs_served(api, cluster)

    answer = api.delete("/v1/apps/blog", headers=admin)
    assert answer.status_code == 200, answer.json
    assert answer.json == {"destroyed": "blog", "tokens": 1, "releases": 1, "volumes": [], "bucket": None,
                           "objects": None, "images": 0, "images_left_on": ["home-1"]}  # its registry is down
    assert store.get(keys.app("blog")) is None
    assert under(store, keys.APP_TOKENS, "blog") == []
    assert under(store, keys.release("blog")) == []
    assert store.get(keys.secrets("blog")) is None and store.get(keys.repo("blog")) is None
    assert under(store, keys.metrics("app/blog")) == []
    assert not (root / "blog.git").exists()
    assert router_answer(store, old_token) == "401 Unauthorized"
    assert any(e.value.get("kind") == "app.destroyed" for e in store.list(keys.EVENTS))
    # Every other machine's repository loop removes its copy at its next pass.
    machine = SimpleNamespace(base=other.parent, store=store,
                              cfg=SimpleNamespace(name="home-2", store_endpoints=lambda: [cluster.etcd_url]))
    loop = RepoSyncLoop(machine)
    loop.step(machine)
    loop.worker.join(10)
    assert not (other / "blog.git").exists()

    assert api.post("/v1/apps", json={"name": "blog"}, headers=admin).status_code == 201
    assert api.put("/v1/apps/blog/access", json={"policy": "token"}, headers=admin).status_code == 200
    assert router_answer(store, old_token) == "401 Unauthorized"
    spec = api.get("/v1/apps/blog", headers=admin).json["app"]
    assert spec["secrets"] == [] and not spec.get("domains")
    assert api.get("/v1/apps/blog/tokens", headers=admin).json["tokens"] == []
    assert api.get("/v1/apps/blog/releases", headers=admin).json.get("releases") == []
    assert old_sha.encode() not in refs_served(api, cluster)
    # A copy of the old repository still on this machine (it missed the destroy) is not served.
    shutil.rmtree(root / "blog.git")
    shutil.copytree(stale_here, root / "blog.git")
    assert old_sha.encode() not in refs_served(api, cluster)
    # A token record of the old app written while the destroy ran opens nothing either.
    store.put(keys.app_token(hash_token(old_token)), {"id": "tok_0123456789ab", "app": "blog", "name": "alice",
                                         "app_generation": 1, "created_at": 0, "expires_at": None,
                                         "revoked": False})
    assert router_answer(store, old_token) == "401 Unauthorized"


@pytest.mark.parametrize("held, message", [
    ("volume", "volume data/files (1024 MB)"),
    ("bucket", "bucket data on the built-in storage"),
])
def test_an_app_with_stored_data_is_not_destroyed_without_confirmation_and_nothing_changes(
        api, cluster, node_dir, held, message):
    store, admin = cluster.store, bearer(cluster.admin)
    assert api.post("/v1/apps", json={"name": "data"}, headers=admin).status_code == 201
    token = api.post("/v1/apps/data/tokens", json={"name": "bob"}, headers=admin).json["token"]
    if held == "volume":
        store.put(keys.volume("data", "files"), {"app": "data", "name": "files", "size_mb": 1024})
    else:
        store.put(keys.bucket("data"), {"app": "data", "bucket": "data", "backend": "builtin"})
    revision = store.revision()
    answer = api.delete("/v1/apps/data", headers=admin)
    assert answer.status_code == 409
    error = answer.json["error"]
    assert message in error and "vcapp apps destroy data --confirm data" in error and "Nothing was changed" in error
    wrong = api.delete("/v1/apps/data?confirm=date", headers=admin)
    assert wrong.status_code == 400 and "does not name app data" in wrong.json["error"]
    wrong = api.delete("/v1/apps/data", json={"confirm": "dat"}, headers=admin)
    assert wrong.status_code == 400
    # Confirmed, but the storage that holds the data cannot be reached from here (this API has
    # no node config, so no storage plan): refused before anything changes.
    unreachable = api.delete("/v1/apps/data", json={"confirm": "data"}, headers=admin)
    assert unreachable.status_code == 503 and "nothing changed" in unreachable.json["error"]
    assert store.revision() == revision
    assert router_answer(store, token, "data") == "200 OK"


def test_a_push_that_ends_after_the_destroy_records_nothing(api, cluster, node_dir, tmp_path):
    """A push received just before the destroy finishes after it: its branches never become the
    record of the app, nor of a new app of the same name (other machines would fetch them)."""
    store, admin, root = cluster.store, bearer(cluster.admin), node_dir / "git"
    assert api.post("/v1/apps", json={"name": "late"}, headers=admin).status_code == 201
    commit_to(root, "late", b"print('pushed')\n")
    in_flight = tmp_path / "late.git"
    shutil.copytree(root / "late.git", in_flight)
    assert api.delete("/v1/apps/late", headers=admin).status_code == 200
    shutil.copytree(in_flight, root / "late.git")  # the push's repository, still open in its worker
    reposync.publish(store, "late", root, "home-1")
    assert store.get(keys.repo("late")) is None

    assert api.post("/v1/apps", json={"name": "late"}, headers=admin).status_code == 201
    shutil.rmtree(root / "late.git")
    shutil.copytree(in_flight, root / "late.git")
    reposync.publish(store, "late", root, "home-1")
    assert store.get(keys.repo("late")) is None
