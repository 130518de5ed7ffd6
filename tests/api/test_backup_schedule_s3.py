"""Scheduled backups into a bucket of an S3 service outside the cluster: the schedule set with
the CLI against the served API (its secret key sealed in etcd, never shown), then the
controller's backup worker (vcapp/node/backup_loop.py) run as the controller runs it, on a real
etcd, against a real SeaweedFS S3 gateway: the backup lands in the bucket, opens with the
admin's age key only, the oldest beyond `keep` are deleted, and a refused key is a failed run
that says why."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from types import SimpleNamespace

import pytest
import requests

from tests.api.conftest import ADMIN_KEY, ADMIN_SECRET, bearer
from vcapp.node.backup_loop import BackupLoop
from vcapp.state import backups, keys

pytestmark = pytest.mark.cluster

BUCKET, PREFIX = "offsite", "acme/"
TIMEOUT = 60


@pytest.fixture
def admin_key(tmp_path):
    path = tmp_path / "backup-key.txt"
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    return path


@pytest.fixture
def scheduled(served, external_s3, vcapp_cli, node_dir, admin_key):
    """The schedule set by `vcapp backup schedule --s3`; yields (cluster, the bucket's client)."""
    url, cluster, _ = served
    cluster.store.delete(keys.BACKUP_SCHEDULE)
    cluster.store.delete(keys.BACKUP_STATUS)
    s3 = external_s3.client()
    if not s3.bucket_exists(BUCKET):
        s3.make_bucket(BUCKET)
    for o in s3.list_objects(BUCKET, recursive=True):
        s3.remove_object(BUCKET, o.object_name)
    assert vcapp_cli("login", url, "--token-stdin", input=cluster.admin).code == 0
    done = vcapp_cli("backup", "schedule", "--every", "1d", "--keep", "2", "-r", str(admin_key),
                     "--s3", f"s3://{BUCKET}/{PREFIX}", "--s3-endpoint", external_s3.endpoint,
                     "--s3-access-key", ADMIN_KEY, "--s3-secret-key-stdin", input=ADMIN_SECRET + "\n", timeout=TIMEOUT)
    assert done.code == 0, done.err
    assert f"a backup every 1d into s3://{BUCKET}/{PREFIX} at {external_s3.endpoint}" in done.out
    return cluster, s3


def run_controller_worker(cluster) -> dict:
    """One check of the controller's backup loop, its worker run to the end."""
    loop = BackupLoop(None)
    loop._run(cluster.store, SimpleNamespace(name="home-1"), backups.schedule(cluster.store), "acme")
    return backups.status(cluster.store)


def test_the_schedules_secret_key_is_sealed_in_etcd_and_never_shown(served, scheduled):
    url, _, _ = served
    cluster, _ = scheduled
    record = cluster.store.value(keys.BACKUP_SCHEDULE)
    assert record["secret"] and ADMIN_SECRET not in json.dumps(record)
    shown = requests.get(f"{url}/v1/backups", headers=bearer(cluster.admin), timeout=TIMEOUT).json()
    assert "secret" not in shown["schedule"] and ADMIN_SECRET not in json.dumps(shown)
    assert shown["schedule"]["s3"]["bucket"] == BUCKET


def test_a_backup_lands_in_the_bucket_opens_with_the_admins_key_and_the_oldest_go(scheduled, admin_key, tmp_path):
    cluster, s3 = scheduled
    for old in ("20200101T000000Z", "20200102T000000Z"):  # two from long ago, and a file that is no backup
        s3.put_object(BUCKET, f"{PREFIX}vcapp-backup-acme-{old}.tar.age", io.BytesIO(b"old"), 3)
    s3.put_object(BUCKET, f"{PREFIX}notes.txt", io.BytesIO(b"mine"), 4)

    status = run_controller_worker(cluster)  # the newest is years old: a backup is made
    assert status["ok"], status
    names = sorted(o.object_name for o in s3.list_objects(BUCKET, prefix=PREFIX, recursive=True))
    assert f"{PREFIX}{status['name']}" in names and len(names) == 4, names
    body = s3.get_object(BUCKET, PREFIX + status["name"]).read()
    assert len(body) == status["bytes"]
    opened = subprocess.run(["age", "-d", "-i", str(admin_key)], input=body, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(opened)) as tar:
        state = json.load(tar.extractfile("./state.json"))
    assert [r["value"]["name"] for r in state[keys.CLUSTER]] == ["acme"]
    assert state[keys.BACKUP_SCHEDULE][0]["value"]["secret"] == ADMIN_SECRET  # open inside, to seal again

    assert run_controller_worker(cluster)["name"] == status["name"]  # no new one: the oldest beyond 2 go
    left = sorted(o.object_name for o in s3.list_objects(BUCKET, prefix=PREFIX, recursive=True))
    assert left == sorted([f"{PREFIX}{status['name']}", f"{PREFIX}vcapp-backup-acme-20200102T000000Z.tar.age",
                           f"{PREFIX}notes.txt"]), left


def test_a_refused_key_is_a_failed_run_that_says_why(scheduled, external_s3, vcapp_cli, admin_key):
    cluster, s3 = scheduled
    done = vcapp_cli("backup", "schedule", "-r", str(admin_key), "--s3", f"s3://{BUCKET}/{PREFIX}",
                     "--s3-endpoint", external_s3.endpoint, "--s3-access-key", ADMIN_KEY, "--s3-secret-key-stdin",
                     input="not-the-secret\n", timeout=TIMEOUT)
    assert done.code == 0, done.err
    status = run_controller_worker(cluster)
    assert not status["ok"] and "refused the key" in status["error"], status
    assert [o for o in s3.list_objects(BUCKET, prefix=PREFIX, recursive=True) if not o.is_dir] == []
    shown = vcapp_cli("backup", "status", timeout=TIMEOUT)
    assert "FAILED" in shown.out and "refused the key" in shown.out, shown.out
