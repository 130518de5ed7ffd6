"""Where the cluster's buckets live: the built-in storage (no setting), or an S3 service the
cluster does not run (storage/external.py), chosen by an admin.

    /vc/settings/buckets  {kind, endpoint, iam_endpoint, region, bucket_prefix, access_key,
                           secret: Fernet token of the admin secret key, set_at, by}

The admin secret key is sealed with the cluster's secrets key (vcapp/state/secrets.py); no answer,
event or log line carries it. A setting is stored only after the service accepted its key.
Buckets stay on the service they were made on (their apps' keys work only there), so where
buckets go (endpoint and bucket prefix) can change only while the cluster has no bucket; the
admin key, kind and region of the same service can be replaced at any time.
"""

from __future__ import annotations

import time

from storage import external
from storage.host import StorageError
from vcapp.errors import BadRequest, Conflict, VcError
from vcapp.state import events, keys, secrets
from vcapp.state.store import Store, delete_op, none_under, put_op, unchanged

BACKEND, BUCKETS = keys.BUCKET_BACKEND, keys.BUCKETS
BUILTIN, EXTERNAL = "builtin", "external"
SECRET_WHAT = "the bucket backend's secret key (`vcapp buckets backend set`)"


class BadGateway(VcError):
    status = 502


def check_body(body: dict) -> dict:
    """The fields of a setting, validated (BadRequest saying what to fix); nothing contacted.
    The CLI runs it before sending, the API again on receipt."""
    try:
        setting = {"endpoint": external.check_endpoint(body.get("endpoint")),
                   "kind": external.check_kind(body.get("kind")),
                   "region": external.check_region(body.get("region")),
                   "bucket_prefix": external.check_prefix(body.get("bucket_prefix")),
                   "iam_endpoint": (external.check_endpoint(body["iam_endpoint"], "IAM endpoint")
                                    if body.get("iam_endpoint") else "")}
    except external.BadSetting as e:
        raise BadRequest(str(e)) from None
    for field in ("access_key", "secret_key"):
        value = body.get(field)
        if not isinstance(value, str) or not value.strip() or "\n" in value.strip():
            raise BadRequest(f"{field.replace('_', ' ')}: give the admin key of the S3 service "
                             f"(one line; the secret on stdin with --secret-key-stdin)")
        setting[field] = value.strip()
    if setting["iam_endpoint"] and setting["kind"] != "iam":
        raise BadRequest("IAM endpoint: only kind iam uses one")
    return setting


def get(store: Store) -> dict | None:
    return store.value(BACKEND)


def public(record: dict | None) -> dict:
    """What `vcapp buckets backend show` prints: everything but the secret."""
    if not record:
        return {"backend": BUILTIN}
    shown = ("kind", "endpoint", "iam_endpoint", "region", "bucket_prefix", "access_key", "set_at", "by")
    return {"backend": EXTERNAL, **{k: record.get(k) for k in shown}}


def service(record: dict) -> external.Service:
    """The service of a stored setting, its secret unsealed (only to call the service)."""
    return external.Service(endpoint=record["endpoint"], kind=record["kind"], access_key=record["access_key"],
                            secret_key=secrets.unseal(record["secret"], SECRET_WHAT),
                            region=record.get("region") or "", iam_endpoint=record.get("iam_endpoint") or "")


def location(record: dict | None) -> tuple[str, str] | None:
    """Where buckets go under a setting: (endpoint, prefix), None for the built-in storage."""
    return (record["endpoint"], record.get("bucket_prefix") or "") if record else None


def describe(record: dict | None) -> str:
    """Where a backend setting, or a bucket record, puts buckets, in words."""
    return f"the S3 service at {record['endpoint']}" if record and record.get("endpoint") else "the built-in storage"


def set_backend(store: Store, body: dict, who: str = "admin") -> dict:
    """Check the service accepts the key, then store the setting (refused if it would move
    where buckets go while buckets exist). Returns the public view."""
    setting = check_body(body)
    svc = external.Service(endpoint=setting["endpoint"], kind=setting["kind"], access_key=setting["access_key"],
                           secret_key=setting["secret_key"], region=setting["region"],
                           iam_endpoint=setting["iam_endpoint"])
    entry = store.get(BACKEND)
    old = entry.value if entry else None
    moves = location(old) != location(setting)
    if moves:
        _refuse_if_buckets(store, old, "changed")
    try:
        external.check_service(svc)
    except external.KeyRefused as e:
        raise BadRequest(f"{e}; nothing was stored") from None
    except StorageError as e:
        raise BadGateway(f"{e}; nothing was stored") from None
    record = {k: v for k, v in setting.items() if k != "secret_key"}
    record.update(secret=secrets.seal(setting["secret_key"]), set_at=time.time(), by=who)
    guards = [unchanged(BACKEND, entry.mod_revision if entry else 0)] + ([none_under(BUCKETS)] if moves else [])
    if not store.txn(guards, [put_op(BACKEND, record)]):
        raise Conflict("the bucket backend or the buckets changed while the service was checked; "
                       "look at `vcapp buckets list` and try again")
    events.record(store, "buckets", f"buckets now go to {describe(record)} ({record['kind']}, "
                                    f"key {record['access_key']}), set by {who}")
    return public(record)


def clear(store: Store, who: str = "admin") -> dict:
    """Go back to the built-in storage (refused while buckets exist on the external service)."""
    entry = store.get(BACKEND)
    if entry is None:
        return public(None)
    _refuse_if_buckets(store, entry.value, "cleared")
    if not store.txn([unchanged(BACKEND, entry.mod_revision), none_under(BUCKETS)], [delete_op(BACKEND)]):
        raise Conflict("the bucket backend or the buckets changed meanwhile; "
                       "look at `vcapp buckets list` and try again")
    events.record(store, "buckets", f"buckets now go to the built-in storage (external service "
                                    f"{entry.value['endpoint']} cleared by {who})")
    return public(None)


def _refuse_if_buckets(store: Store, current: dict | None, verb: str) -> None:
    found = sorted(keys.name_of(e.key, BUCKETS) for e in store.list(BUCKETS))
    if found:
        raise Conflict(f"the bucket backend cannot be {verb} while {len(found)} bucket(s) live on "
                       f"{describe(current)} ({', '.join(found[:5])}{', ...' if len(found) > 5 else ''}): "
                       "their apps' keys only work there, so buckets stay where they were made. A new admin "
                       "key for the same service (same --endpoint and --bucket-prefix) can be set at any time")
