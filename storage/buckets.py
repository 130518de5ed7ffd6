"""Per-app S3 buckets with their own keys, on the S3 gateway every filer runs.

    bucket    <app>  (filer path /buckets/<app>/, SeaweedFS puts it in collection <app>),
              owned by identity app-<app>
    rule      fs.configure /buckets/<app>/: replication for the live machines, fsync
    identity  s3.configure -user=app-<app> -actions=Read,Write,List,Tagging -buckets=<app>
              with a random access/secret key pair. The identities live in the filer (so in
              etcd) and every S3 gateway reloads them; once one identity exists, anonymous
              requests are refused, and a key only opens the buckets listed for it.

`delete_bucket` removes identity, bucket, objects and rule when the app is destroyed.

The app gets AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL_S3 and BUCKET_NAME.
"""

from __future__ import annotations

import json
import secrets

from storage import replication, shell
from storage.host import Host, StorageError
from storage.plan import S3_PORT, ClusterPlan
from storage.volumes import BUCKETS_ROOT, check_names, rule_command

ACTIONS = "Read,Write,List,Tagging"
ACCESS_KEY_BYTES = 10  # 20 hex chars, the length of an AWS access key id
SECRET_KEY_BYTES = 20  # 40 hex chars, as AWS secret keys


def identity_name(app: str) -> str:
    return f"app-{app}"


def identities(plan: ClusterPlan, host: Host, weed: str) -> list[dict]:
    """The S3 identities as s3.configure prints them."""
    text = shell.run(plan, host, ["s3.configure"], weed)
    start = text.find("{")
    if start < 0:
        return []
    return json.loads(text[start:text.rfind("}") + 1]).get("identities", [])


def _existing_keys(plan: ClusterPlan, host: Host, app: str, weed: str) -> dict | None:
    for ident in identities(plan, host, weed):
        if ident.get("name") == identity_name(app) and ident.get("credentials"):
            cred = ident["credentials"][0]
            return {"access_key": cred["accessKey"], "secret_key": cred["secretKey"]}
    return None


def create_bucket(plan: ClusterPlan, host: Host, app: str, live_sites: list[str], weed: str,
                  endpoint_host: str | None = None) -> dict[str, str]:
    """Create bucket `app` with its own key pair (idempotent: an existing pair is kept).
    Returns the environment variables the app's instances get. `endpoint_host`: machine
    whose S3 gateway the app should use (default: `host`)."""
    check_names(app, "bucket")
    keys = _existing_keys(plan, host, app, weed)
    if keys is None:
        keys = {"access_key": secrets.token_hex(ACCESS_KEY_BYTES).upper(),
                "secret_key": secrets.token_hex(SECRET_KEY_BYTES)}
        shell.run(plan, host, [
            f"s3.configure -user={identity_name(app)} -actions={ACTIONS} -buckets={app} "
            f"-access_key={keys['access_key']} -secret_key={keys['secret_key']} -apply",
        ], weed)
    code = replication.choose_code(live_sites)
    commands = [rule_command(f"{BUCKETS_ROOT}/{app}/", "", code)]
    if not _bucket_exists(plan, host, app, weed):
        commands.insert(0, f"s3.bucket.create -name={app} -owner={identity_name(app)}")
    shell.run(plan, host, commands, weed)
    addr = plan.machine(endpoint_host or host.name).addr
    return {
        "AWS_ACCESS_KEY_ID": keys["access_key"],
        "AWS_SECRET_ACCESS_KEY": keys["secret_key"],
        "AWS_ENDPOINT_URL_S3": f"http://{addr}:{S3_PORT}",
        "BUCKET_NAME": app,
    }


def _bucket_exists(plan: ClusterPlan, host: Host, app: str, weed: str) -> bool:
    out = shell.run(plan, host, ["s3.bucket.list"], weed)
    return any(line.split()[0] == app for line in out.splitlines() if line.strip())


CLOSED_IDENTITY = "vcapp-closed"  # holds the gateway shut when no app has a bucket


def delete_bucket(plan: ClusterPlan, host: Host, app: str, weed: str) -> None:
    """Delete bucket `app` for good: its identity first (its keys stop working at once), then
    the bucket with every object (s3.bucket.delete drops its collection: the SeaweedFS volumes
    holding the objects, on every machine) and its path rule. Idempotent: a retry after a
    failure halfway finishes the job.

    The gateway admits anonymous requests, with every right, while it knows no identity at
    all: when the app's is the last one, an identity with a random key nobody keeps and no
    bucket of its own takes its place first, so the gateway stays shut."""
    check_names(app, "bucket")
    known = [i.get("name") for i in identities(plan, host, weed)]
    commands = []
    if identity_name(app) in known:
        if not set(known) - {identity_name(app)}:
            commands.append(f"s3.configure -user={CLOSED_IDENTITY} -actions=Read -buckets={CLOSED_IDENTITY} "
                            f"-access_key={secrets.token_hex(ACCESS_KEY_BYTES).upper()} "
                            f"-secret_key={secrets.token_hex(SECRET_KEY_BYTES)} -apply")
        commands.append(f"s3.configure -user={identity_name(app)} -delete -apply")
    if _bucket_exists(plan, host, app, weed):
        commands.append(f"s3.bucket.delete -name={app}")
    commands.append(f"fs.configure -locationPrefix={BUCKETS_ROOT}/{app}/ -delete -apply")
    shell.run(plan, host, commands, weed)
