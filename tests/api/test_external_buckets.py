"""Buckets on an external S3 service, through the served API and the CLI on a real etcd.

"The S3 service the admin already runs" is a real standalone SeaweedFS (`weed server` with
its S3 gateway and, on the same port, its embedded IAM API with writes enabled), started once
for the module on free loopback ports. Apps' keys are checked by using them with the minio
client, the way an app would.
"""

from __future__ import annotations

import io
import json
import time

import pytest
import requests
from minio.error import S3Error

from tests.api.conftest import ADMIN_KEY, ADMIN_SECRET, CLUSTER_KEY, External, bearer, free_port
from vcapp.machine import derive
from vcapp.node.placer_loop import PASS_THROUGH
from vcapp.node.runtime_loop import with_s3_endpoint
from vcapp.state import apps, keys, secrets

pytestmark = pytest.mark.cluster

SET_TIMEOUT = 60

@pytest.fixture
def fresh(served):
    """The served cluster without apps, buckets or a bucket backend; yields (url, cluster)."""
    url, cluster, _ = served
    for prefix in (keys.APPS, keys.BUCKETS, keys.SECRETS, keys.BUCKET_BACKEND, keys.STORAGE_ENABLED):
        cluster.store.delete(prefix, prefix=True)
    return url, cluster


@pytest.fixture
def cli(fresh, vcapp_cli):
    url, cluster = fresh
    assert vcapp_cli("login", url, cluster.admin).code == 0
    return vcapp_cli


def setting(ext: External, **change) -> dict:
    return {"endpoint": ext.endpoint, "kind": "iam", "access_key": ADMIN_KEY, "secret_key": ADMIN_SECRET, **change}


def put_backend(url: str, cluster, body: dict) -> requests.Response:
    return requests.put(f"{url}/v1/buckets/backend", json=body, headers=bearer(cluster.admin), timeout=SET_TIMEOUT)


@pytest.mark.parametrize("change, status, message", [
    ({"secret_key": "not-the-secret"}, 400, "refused the key: SignatureDoesNotMatch"),
    ({"access_key": "NOSUCHKEY"}, 400, "refused the key"),
    ({"endpoint": "s3.example.com"}, 400, "is not a URL"),
    ({"endpoint": "http://127.0.0.1:9000/bucket"}, 400, "has a path"),
    ({"kind": "ceph"}, 400, "kind: 'ceph' is not known"),
    ({"endpoint": "http://127.0.0.1:{closed}"}, 502, "cannot reach the S3 service at http://127.0.0.1:"),
])
def test_a_bad_setting_is_refused_and_nothing_is_stored(fresh, external_s3, change, status, message):
    url, cluster = fresh
    if "{closed}" in change.get("endpoint", ""):
        change = dict(change, endpoint=change["endpoint"].format(closed=free_port()))
    answer = put_backend(url, cluster, setting(external_s3, **change))
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"], answer.json()
    if status == 502 or "refused" in message:  # the service was asked, and the answer says so
        assert answer.json()["error"].endswith("; nothing was stored")
    assert cluster.store.get(keys.BUCKET_BACKEND) is None
    shown = requests.get(f"{url}/v1/buckets/backend", headers=bearer(cluster.admin), timeout=10).json()
    assert shown == {"backend": "builtin"}


def test_the_cli_sets_and_shows_the_backend_and_the_secret_never_comes_back(cli, fresh, external_s3):
    url, cluster = fresh
    wrong = cli("buckets", "backend", "set", "--endpoint", external_s3.endpoint, "--kind", "iam",
                "--access-key", ADMIN_KEY, "--secret-key-stdin", input="wrong-secret\n", timeout=SET_TIMEOUT)
    assert wrong.code == 1 and f"the S3 service at {external_s3.endpoint} refused the key" in wrong.err
    assert cluster.store.get(keys.BUCKET_BACKEND) is None

    done = cli("buckets", "backend", "set", "--endpoint", external_s3.endpoint + "/", "--kind", "iam",
               "--access-key", ADMIN_KEY, "--secret-key-stdin", input=ADMIN_SECRET + "\n", timeout=SET_TIMEOUT)
    assert done.code == 0, done.err
    assert f"new buckets go to {external_s3.endpoint} as vcapp-APP" in done.out
    shown = cli("buckets", "backend", "show", "--json")
    assert json.loads(shown.out) == {"backend": "external", "kind": "iam", "endpoint": external_s3.endpoint,
                                     "access_key": ADMIN_KEY, "region": "", "bucket_prefix": "vcapp-",
                                     "iam_endpoint": "", "by": "admin",
                                     "set_at": json.loads(shown.out)["set_at"]}
    human = cli("buckets", "backend", "show")
    assert external_s3.endpoint in human.out and ADMIN_KEY in human.out
    # The secret is in no answer, no event, and not in etcd in the clear.
    raw = json.dumps([e.value for e in cluster.store.list("/vc/")])
    for text in (shown.out, human.out, done.out, raw):
        assert ADMIN_SECRET not in text
    record = cluster.store.value(keys.BUCKET_BACKEND)
    assert secrets.unseal(record["secret"], "test", derive(CLUSTER_KEY, "secrets")) == ADMIN_SECRET


def app_keys(cluster, app: str) -> tuple[str, str]:
    values = secrets.decrypt(cluster.store.value(keys.secrets(app)), derive(CLUSTER_KEY, "secrets"))
    return values["AWS_ACCESS_KEY_ID"], values["AWS_SECRET_ACCESS_KEY"]


def instance_env(cluster, app: str, machine_addr: str = "10.0.0.1") -> dict:
    """The env an instance of APP gets on a machine: the spec's fields the placer passes into
    its assignment, then the runtime's S3 endpoint."""
    spec = apps.get_app(cluster.store, app)
    assignment = {"app": app, "env": spec.get("env"), **{k: spec[k] for k in PASS_THROUGH if spec.get(k)}}
    return with_s3_endpoint(assignment, machine_addr)["env"]


def test_buckets_go_to_the_external_service_with_keys_that_open_only_their_own(cli, fresh, external_s3):
    url, cluster = fresh
    assert put_backend(url, cluster, setting(external_s3)).status_code == 200
    for app in ("alpha", "beta"):
        apps.create_app(cluster.store, app, {})
        made = cli("buckets", "create", app, timeout=SET_TIMEOUT)
        assert made.code == 0, made.err
        assert f"bucket vcapp-{app} ready" in made.out and f"the S3 service at {external_s3.endpoint}" in made.out
    assert cluster.store.get(keys.STORAGE_ENABLED) is None  # the built-in storage never started

    env = instance_env(cluster, "alpha")
    assert env["AWS_ENDPOINT_URL_S3"] == external_s3.endpoint and env["BUCKET_NAME"] == "vcapp-alpha"
    alpha, beta = app_keys(cluster, "alpha"), app_keys(cluster, "beta")
    assert alpha[0] != ADMIN_KEY and alpha != beta

    as_alpha = external_s3.client(*alpha)
    as_alpha.put_object("vcapp-alpha", "notes/1.txt", io.BytesIO(b"alpha's data"), 12)
    assert as_alpha.get_object("vcapp-alpha", "notes/1.txt").read() == b"alpha's data"
    as_beta = external_s3.client(*beta)
    for attempt in (lambda: as_beta.get_object("vcapp-alpha", "notes/1.txt").read(),
                    lambda: as_beta.put_object("vcapp-alpha", "x", io.BytesIO(b"x"), 1),
                    lambda: list(as_beta.list_objects("vcapp-alpha")),
                    lambda: as_alpha.make_bucket("vcapp-gamma")):
        with pytest.raises(S3Error) as denied:
            attempt()
        assert denied.value.code == "AccessDenied"
    as_beta.put_object("vcapp-beta", "y", io.BytesIO(b"y"), 1)  # beta's own bucket opens

    # Again: same bucket, same keys, the data still there.
    assert cli("buckets", "create", "alpha", timeout=SET_TIMEOUT).code == 0
    assert app_keys(cluster, "alpha") == alpha
    assert as_alpha.get_object("vcapp-alpha", "notes/1.txt").read() == b"alpha's data"

    listed = json.loads(cli("buckets", "list", "--json").out)
    assert sorted((b["app"], b["bucket"], b["backend"], b["endpoint"]) for b in listed) == [
        ("alpha", "vcapp-alpha", "external", external_s3.endpoint),
        ("beta", "vcapp-beta", "external", external_s3.endpoint)]
    assert external_s3.endpoint in cli("buckets", "list").out

    # While buckets live there, the backend can be neither cleared nor moved; a new admin key
    # for the same service is fine.
    cleared = cli("buckets", "backend", "clear")
    assert cleared.code == 1 and "cannot be cleared while 2 bucket(s) live on the S3 service at" in cleared.err
    moved = put_backend(url, cluster, setting(external_s3, bucket_prefix="other-"))
    assert moved.status_code == 409 and "cannot be changed while 2 bucket(s)" in moved.json()["error"]
    assert cluster.store.value(keys.BUCKET_BACKEND)["bucket_prefix"] == "vcapp-"
    assert put_backend(url, cluster, setting(external_s3, region="us-east-1")).status_code == 200
    assert as_alpha.get_object("vcapp-alpha", "notes/1.txt").read() == b"alpha's data"


def test_buckets_on_the_built_in_storage_keep_the_backend_from_changing(fresh, external_s3):
    url, cluster = fresh
    apps.create_app(cluster.store, "notes", {})
    cluster.store.put(keys.BUCKETS + "notes", {"app": "notes", "bucket": "notes", "created_at": time.time()})
    answer = put_backend(url, cluster, setting(external_s3))
    assert answer.status_code == 409, answer.text
    assert "1 bucket(s) live on the built-in storage (notes)" in answer.json()["error"]
    assert cluster.store.get(keys.BUCKET_BACKEND) is None


def test_a_key_the_service_lost_is_replaced_by_the_next_create(cli, fresh, external_s3):
    import boto3

    url, cluster = fresh
    assert put_backend(url, cluster, setting(external_s3)).status_code == 200
    apps.create_app(cluster.store, "gamma", {})
    assert cli("buckets", "create", "gamma", timeout=SET_TIMEOUT).code == 0
    old = app_keys(cluster, "gamma")
    iam = boto3.client("iam", endpoint_url=external_s3.endpoint, region_name="us-east-1",
                       aws_access_key_id=ADMIN_KEY, aws_secret_access_key=ADMIN_SECRET)
    iam.delete_access_key(UserName="vcapp-gamma", AccessKeyId=old[0])  # e.g. the service's admin revoked it

    assert cli("buckets", "create", "gamma", timeout=SET_TIMEOUT).code == 0
    new = app_keys(cluster, "gamma")
    assert new[0] != old[0]
    external_s3.client(*new).put_object("vcapp-gamma", "k", io.BytesIO(b"v"), 1)
    with pytest.raises(S3Error):
        external_s3.client(*old).put_object("vcapp-gamma", "k", io.BytesIO(b"v"), 1)


def test_a_destroyed_apps_external_bucket_key_and_objects_are_gone_for_an_app_made_again(cli, fresh, external_s3):
    url, cluster = fresh
    assert put_backend(url, cluster, setting(external_s3)).status_code == 200
    apps.create_app(cluster.store, "delta", {})
    assert cli("buckets", "create", "delta", timeout=SET_TIMEOUT).code == 0
    old = app_keys(cluster, "delta")
    external_s3.client(*old).put_object("vcapp-delta", "notes/1.txt", io.BytesIO(b"delta's data"), 12)

    refused = cli("apps", "destroy", "delta", "--yes", timeout=SET_TIMEOUT)
    assert refused.code == 1 and "bucket vcapp-delta on the S3 service at" in refused.err, refused.err
    assert "vcapp apps destroy delta --confirm delta" in refused.err
    assert external_s3.client(*old).get_object("vcapp-delta", "notes/1.txt").read() == b"delta's data"

    done = cli("apps", "destroy", "delta", "--confirm", "delta", timeout=SET_TIMEOUT)
    assert done.code == 0 and "bucket vcapp-delta" in done.out, done.err
    assert not external_s3.client().bucket_exists("vcapp-delta")
    with pytest.raises(S3Error):  # the old key is gone from the service's IAM
        external_s3.client(*old).list_buckets()
    assert cluster.store.get(keys.bucket("delta")) is None and cluster.store.get(keys.app("delta")) is None

    apps.create_app(cluster.store, "delta", {})
    assert cli("buckets", "create", "delta", timeout=SET_TIMEOUT).code == 0
    new = app_keys(cluster, "delta")
    assert new[0] != old[0]
    assert list(external_s3.client(*new).list_objects("vcapp-delta", recursive=True)) == []
