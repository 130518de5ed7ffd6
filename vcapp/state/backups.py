"""The backup schedule and what its last run did.

    /vc/settings/backup   {every_s, keep, recipient, dir | s3 {endpoint, bucket, prefix, region,
                           access_key}, secret (the S3 secret key, sealed), set_at, by}
    /vc/backups/status    {at, ok, name, bytes, machine, error}

The controller (vcapp/node/backup_loop.py) writes a backup (vcapp/deploy/backup.py) into `dir`
on its own disk, or uploads it to the bucket `s3` under `prefix`, when the newest one there is
`every_s` old (at once when there is none), and deletes the oldest beyond `keep`. A bucket on
an S3 service outside the cluster is the place that outlives the machines; `dir` is best a
mount every machine shares (a NAS): a controller that moves to another machine finds there
the backups the last one made. Defaults
are k3s's for etcd snapshots: every 12 hours, 5 kept.
"""

from __future__ import annotations

import calendar
import re
import time

from storage import external
from vcapp.errors import BadRequest
from vcapp.state import keys, secrets
from vcapp.state.store import Store

DEFAULT_EVERY_S = 12 * 3600
DEFAULT_KEEP = 5
MIN_EVERY_S = 3600  # a backup reads every volume and image: more often than hourly is load for nothing
MAX_EVERY_S = 31 * 24 * 3600
MAX_KEEP = 100
RECIPIENT = re.compile(r"age1[02-9ac-hj-np-z]{58}")  # age's X25519 public key, matched whole
NAME = re.compile(r"vcapp-backup-(?P<cluster>[a-z0-9-]+)-(?P<at>\d{8}T\d{6}Z)\.tar\.age")
DURATION = re.compile(r"(\d+)\s*(m|h|d)")
S3_PREFIX = re.compile(r"[A-Za-z0-9._/-]{0,200}")


def check_recipient(text: object) -> str:
    value = text.strip() if isinstance(text, str) else ""
    if not RECIPIENT.fullmatch(value):
        raise BadRequest("recipient: give the public key of an age key pair (age1..., 62 characters); make one with "
                         "`age-keygen -o backup-key.txt` on a machine you keep the backups' key on, and keep that "
                         "file away from the cluster: it is what opens the backups")
    return value


def parse_every(text: object) -> int:
    """Seconds from "12h", "1d", "90m"."""
    match = DURATION.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    if not match:
        raise BadRequest(f"every: {text!r} is not a period; use minutes, hours or days like 90m, 12h or 1d")
    seconds = int(match.group(1)) * {"m": 60, "h": 3600, "d": 86400}[match.group(2)]
    if not MIN_EVERY_S <= seconds <= MAX_EVERY_S:
        raise BadRequest(f"every: between {MIN_EVERY_S // 3600}h and {MAX_EVERY_S // 86400}d, got {text}")
    return seconds


def check_schedule(body: dict) -> dict:
    """A schedule from a request's fields, validated (BadRequest saying what to fix); an S3
    target's secret key is still open here (`set_schedule` seals it)."""
    keep = body.get("keep", DEFAULT_KEEP)
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= MAX_KEEP:
        raise BadRequest(f"keep: a number of backups from 1 to {MAX_KEEP}, got {keep!r}")
    every = body.get("every", "12h")
    out = {"every_s": parse_every(every) if isinstance(every, str) else _seconds(every), "keep": keep,
           "recipient": check_recipient(body.get("recipient"))}
    if ("dir" in body) == ("s3" in body):
        raise BadRequest("give one place for the backups: dir (a directory on the machines) or s3 (a bucket)")
    if "s3" in body:
        return {**out, **_check_s3(body["s3"])}
    where = body.get("dir")
    if not isinstance(where, str) or not where.startswith("/") or len(where) > 4096 or \
            any(ord(c) < 32 or c == "\x7f" for c in where):
        raise BadRequest("dir: give an absolute directory path on the machines (best a mount they share)")
    return {**out, "dir": where.rstrip("/") or "/"}


def _check_s3(s3: object) -> dict:
    if not isinstance(s3, dict):
        raise BadRequest('s3: give {"endpoint", "bucket", "prefix", "access_key", "secret_key"}')
    prefix = str(s3.get("prefix") or "").strip().lstrip("/")
    if not S3_PREFIX.fullmatch(prefix):
        raise BadRequest(f"s3 prefix {prefix!r}: letters, digits and . _ - /, at most 200")
    try:
        target = {"endpoint": external.check_endpoint(s3.get("endpoint"), "s3 endpoint"),
                  "bucket": external.check_bucket(s3.get("bucket")), "prefix": prefix,
                  "region": external.check_region(s3.get("region"))}
    except external.BadSetting as e:
        raise BadRequest(str(e)) from None
    for field in ("access_key", "secret_key"):
        value = s3.get(field)
        if not isinstance(value, str) or not value.strip() or any(ord(c) < 32 for c in value.strip()):
            raise BadRequest(f"s3 {field.replace('_', ' ')}: give the key that may write the bucket "
                             "(one line; the secret on stdin with --s3-secret-key-stdin)")
    return {"s3": {**target, "access_key": s3["access_key"].strip()}, "secret": s3["secret_key"].strip()}


def public(record: dict | None) -> dict | None:
    """A schedule as the API shows it: never the S3 secret key."""
    return {k: v for k, v in record.items() if k != "secret"} if record else record


def service(record: dict) -> external.Service:
    """The S3 service of a schedule with an s3 target, its key unsealed (only to call it)."""
    s3 = record["s3"]
    return external.Service(endpoint=s3["endpoint"], kind="iam", access_key=s3["access_key"],
                            secret_key=secrets.unseal(record["secret"], "the backup bucket's secret key "
                                                      "(`vcapp backup schedule --to s3://...`)"),
                            region=s3.get("region") or "")


def _seconds(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_EVERY_S <= value <= MAX_EVERY_S:
        raise BadRequest(f"every: seconds between {MIN_EVERY_S} and {MAX_EVERY_S}, or a period like 12h")
    return value


def schedule(store: Store) -> dict | None:
    return store.value(keys.BACKUP_SCHEDULE)


def set_schedule(store: Store, body: dict, who: str = "admin") -> dict:
    record = {**check_schedule(body), "set_at": time.time(), "by": who}
    if record.get("secret"):
        record["secret"] = secrets.seal(record["secret"])
    store.put(keys.BACKUP_SCHEDULE, record)
    return public(record)


def clear_schedule(store: Store) -> bool:
    return store.delete(keys.BACKUP_SCHEDULE) > 0


def status(store: Store) -> dict | None:
    return store.value(keys.BACKUP_STATUS)


def record_run(store: Store, ok: bool, machine: str, name: str = "", size: int = 0, error: str = "") -> None:
    store.put(keys.BACKUP_STATUS, {"at": time.time(), "ok": ok, "name": name, "bytes": size, "machine": machine,
                                   "error": error[:1000]})


def made_at(name: str) -> float | None:
    """When a backup file of this name was made (its name says), or None for another file."""
    match = NAME.fullmatch(name)
    return float(calendar.timegm(time.strptime(match.group("at"), "%Y%m%dT%H%M%SZ"))) if match else None
