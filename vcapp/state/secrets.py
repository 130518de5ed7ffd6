"""App secrets: encrypted at rest in etcd, decrypted only by cluster machines, never listed.

    /vc/secrets/<app>   {"names": ["DATABASE_URL", ...], "data": "<Fernet token>", "updated_at": t}

The token is Fernet (AES-128-CBC + HMAC-SHA256) over the JSON {name: value}, keyed by the
cluster key's "secrets" derivation (`vcapp.machine.derived_key`), which lives on every
machine's disk and never in etcd: a copy of etcd alone reveals names, not values.
The app spec lists the names (the placer copies them into assignments); a change of the
secrets rolls the instances in the same transaction (a new release, apps.rolled), so they get the new
values. Values never appear in an answer, an event or a log line. `seal`/`unseal` do the same
for a single secret kept elsewhere in etcd (the bucket backend's admin key, vcapp/state/bucketbackend.py).
"""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Callable

from cryptography.fernet import Fernet, InvalidToken

from vcapp.errors import BadRequest, Conflict, Unavailable
from vcapp.state import apps, events, keys
from vcapp.state.store import Store, delete_op, put_op, unchanged

SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")  # a POSIX name, matched whole
MAX_VALUE = 64 * 1024  # an env var bigger than this belongs in a file or a volume
MAX_TOTAL = 128 * 1024  # all of an app's secrets: its record stays far below etcd's request limit


def _fernet(key: bytes | None = None) -> Fernet:
    if key is None:
        from vcapp.machine import derived_key

        try:
            key = derived_key("secrets")
        except OSError:
            raise Unavailable("this machine has no cluster key, so it cannot read or write app secrets; "
                              "ask another cluster machine") from None
    return Fernet(base64.urlsafe_b64encode(key[:32]))


def secret_name(name: str) -> str:
    if not isinstance(name, str) or not SECRET_NAME.fullmatch(name):
        raise BadRequest(f"secret name {name!r} is not valid: letters, digits and '_', not starting with a digit "
                         "(at most 128)")
    return name


def parse_pairs(pairs: list[str]) -> dict[str, str]:
    """NAME=value arguments of `vcapp secrets set` (the value may contain '=')."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise BadRequest(f"{secret_name(name)}: give NAME=value")
        out[secret_name(name)] = value
    return check_values(out)


def check_values(values: object) -> dict[str, str]:
    if not isinstance(values, dict) or not values:
        raise BadRequest('secrets: give an object of names to values, e.g. {"DATABASE_URL": "..."}')
    for name, value in values.items():
        secret_name(name)
        if not isinstance(value, str):
            raise BadRequest(f"secret {name}: the value must be a string")
        if "\n" in value or "\x00" in value or len(value.encode()) > MAX_VALUE:
            raise BadRequest(f"secret {name}: the value must be one line (no NUL) of at most {MAX_VALUE} bytes; "
                             "encode multi-line values (base64)")
    return dict(values)


def seal(text: str, key: bytes | None = None) -> str:
    """A Fernet token of `text` under the cluster's secrets key: for any secret kept in etcd."""
    return _fernet(key).encrypt(text.encode()).decode()


def unseal(token: str, what: str, key: bytes | None = None) -> str:
    """The text of a `seal` token; `what` names the secret and how to set it again."""
    try:
        return _fernet(key).decrypt(token.encode()).decode()
    except InvalidToken:
        raise Unavailable(f"{what} cannot be decrypted with this machine's cluster key "
                          "(was the cluster key replaced?); set it again") from None


# The field each record family keeps sealed. A backup carries these open, inside its own
# encryption to the admin's key (vcapp/deploy/backup.py), never the cluster key; a restore
# seals them again under the new cluster's key.
SEALED_FIELDS = {keys.SECRETS: "data", keys.BUILD_PROXY: "password", keys.BUCKET_BACKEND: "secret",
                 keys.REGISTRIES: "password", keys.BACKUP_SCHEDULE: "secret"}


def opened(prefix: str, value: object) -> object:
    """A record of family `prefix` with its sealed field open (as is when it has none)."""
    field = SEALED_FIELDS.get(prefix)
    if not field or not isinstance(value, dict) or not value.get(field):
        return value
    return {**value, field: unseal(value[field], f"the {field} of {prefix}")}


def sealed(prefix: str, value: object) -> object:
    """`opened` undone, under this machine's cluster key."""
    field = SEALED_FIELDS.get(prefix)
    if not field or not isinstance(value, dict) or not isinstance(value.get(field), str) or not value[field]:
        return value
    return {**value, field: seal(value[field])}


def decrypt(record: dict | None, key: bytes | None = None) -> dict[str, str]:
    """{name: value} from a /vc/secrets record (empty when there is none)."""
    if not record or not record.get("data"):
        return {}
    return json.loads(unseal(record["data"], "the app's secrets (`vcapp secrets set`)", key))


def encrypt(values: dict[str, str], key: bytes | None = None) -> dict:
    return {"names": sorted(values), "data": seal(json.dumps(values), key), "updated_at": time.time()}


def values_for(store: Store, app: str, key: bytes | None = None) -> dict[str, str]:
    """The decrypted secrets of an app (for the node runtime only)."""
    return decrypt(store.value(keys.secrets(app)), key)


def names(store: Store, app: str) -> list[str]:
    apps.get_app(store, app)
    return (store.value(keys.secrets(app)) or {}).get("names", [])


def set_secrets(store: Store, app: str, values: dict[str, str], who: str = "") -> list[str]:
    """Add or replace secrets; returns all names. Instances roll onto the new values, as a new
    release when the app has release records."""
    values = check_values(values)
    result = _change(store, app, lambda cur: {**cur, **values}, f"Set {', '.join(sorted(values))}", who)
    events.record(store, "secrets.set", f"app {app}: secrets {', '.join(sorted(values))} set", app=app)
    return result


def unset_secrets(store: Store, app: str, to_remove: list[str], who: str = "") -> list[str]:
    for name in to_remove:
        secret_name(name)
    result = _change(store, app, lambda cur: {k: v for k, v in cur.items() if k not in to_remove},
                     f"Unset {', '.join(sorted(to_remove))}", who)
    events.record(store, "secrets.unset", f"app {app}: secrets {', '.join(sorted(to_remove))} removed", app=app)
    return result


def _change(store: Store, app: str, change: Callable[[dict], dict], description: str, who: str) -> list[str]:
    """Rewrite the secrets and the spec's names, with the release that rolls them out
    (apps.rolled), in one transaction guarded by both reads."""
    for _ in range(apps.UPDATE_ATTEMPTS):
        spec_entry, sec_entry = store.get(keys.app(apps.app_name(app))), store.get(keys.secrets(app))
        if spec_entry is None:
            apps.get_app(store, app)
        new = change(decrypt(sec_entry.value if sec_entry else None))
        total = sum(len(k.encode()) + len(v.encode()) for k, v in new.items())
        if total > MAX_TOTAL:
            raise BadRequest(f"app {app}'s secrets would be {total} bytes in all; at most {MAX_TOTAL // 1024} KiB. "
                             "Put large values in a file (the image or a volume) and a path in the secret")
        spec = dict(spec_entry.value, secrets=sorted(new), updated_at=time.time())
        spec, roll_guards, roll_ops = apps.rolled(store, app, spec_entry.value, spec, description, who)
        write = put_op(keys.secrets(app), encrypt(new)) if new else delete_op(keys.secrets(app))
        guards = [unchanged(keys.app(app), spec_entry.mod_revision),
                  unchanged(keys.secrets(app), sec_entry.mod_revision if sec_entry else 0), *roll_guards]
        if store.txn(guards, [put_op(keys.app(app), spec), write, *roll_ops]):
            return sorted(new)
    raise Conflict(f"app {app} kept changing while its secrets were set; try again")
