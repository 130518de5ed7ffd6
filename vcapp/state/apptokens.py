"""End-user access tokens for `token` apps, kept in etcd as hashes only.

    /vc/tokens/app/<sha256 of the token>   {id, app, app_generation, name, created_at, expires_at, revoked}

A token opens the app it was made for, not a later app of the same name: `app_generation` is
the create revision of /vc/apps/<app> when the token was made (a destroy and a re-create
change it), and `lookup` answers nothing for a token whose app is gone or is another
generation. A destroy deletes the app's tokens too (vcapp/state/apps.py); the generation check
covers a token made while the destroy ran.

The token itself (router/tokens.py format, `vca_...`) is returned once by `create` and never
stored; `list_tokens` shows ids and names; `revoke` marks the record by its public id, and
node routers stop accepting it within their check cache TTL (router/tokencheck.py).
`lookup(store, hash)` is what a node router's auth service calls.
"""

from __future__ import annotations

import re
import time

from router import tokens
from router.tokens import TokenRecord
from vcapp.errors import BadRequest, NotFound
from vcapp.state import events, keys
from vcapp.state.store import Entry, Store, put_op, unchanged

TOKEN_ID = re.compile(r"tok_[0-9a-f]{12}")  # matched whole


def check_id(value: str) -> str:
    if not TOKEN_ID.fullmatch(value):
        raise BadRequest(f"{value!r} is not an access token id (tok_ and 12 hex characters); "
                         "`vcapp tokens list APP` shows them")
    return value


def require_app(store: Store, app: str) -> Entry:
    entry = store.get(keys.app(app))
    if entry is None:
        raise NotFound(f"no app {app!r}; `vcapp apps list` shows the apps (create one with `vcapp apps create`)")
    return entry


def public(record: dict) -> dict:
    """A record as people see it: never the hash."""
    return {k: record.get(k) for k in ("id", "app", "name", "created_at", "expires_at", "revoked")}


def create(store: Store, app: str, name: str, ttl: int) -> tuple[str, dict]:
    """A new token for `app` (ttl seconds, 0 = never expires): (the token, shown once; its record)."""
    entry = require_app(store, app)
    if not name:
        raise BadRequest("name: say who or what holds the token, e.g. --name alice-phone")
    token, now = tokens.generate(), time.time()
    record = {"id": tokens.new_id(), "app": app, "app_generation": entry.create_revision, "name": name,
              "created_at": now, "expires_at": now + ttl if ttl else None, "revoked": False}
    # Only while the app read above is unchanged: not for an app being destroyed meanwhile.
    if not store.txn([unchanged(keys.app(app), entry.mod_revision)],
                     [put_op(keys.app_token(tokens.hash_token(token)), record)]):
        return create(store, app, name, ttl)
    events.record(store, "token.app.created", f"access token {record['id']} ({name}) created for {app}", app=app)
    return token, public(record)


def list_tokens(store: Store, app: str) -> list[dict]:
    """The app's tokens, oldest first, without secrets or hashes."""
    found = [public(e.value) for e in store.list(keys.APP_TOKENS)
             if isinstance(e.value, dict) and e.value.get("app") == app]
    return sorted(found, key=lambda r: r.get("created_at") or 0)


def revoke(store: Store, app: str, token_id: str) -> dict:
    """Mark the token revoked; node routers refuse it within their cache TTL."""
    check_id(token_id)
    for entry in store.list(keys.APP_TOKENS):
        if isinstance(entry.value, dict) and entry.value.get("id") == token_id and entry.value.get("app") == app:
            record = dict(entry.value, revoked=True, revoked_at=time.time())
            if not store.txn([unchanged(entry.key, entry.mod_revision)], [put_op(entry.key, record)]):
                return revoke(store, app, token_id)  # changed while we looked: read it again
            events.record(store, "token.app.revoked", f"access token {token_id} of {app} revoked", app=app)
            return public(record)
    raise NotFound(f"app {app} has no access token {token_id}; `vcapp tokens list {app}` shows its tokens")


def lookup(store: Store, token_hash: str) -> TokenRecord | None:
    """The record of a token hash, as the node router's auth service wants it."""
    value = store.value(keys.app_token(token_hash))
    if not isinstance(value, dict):
        return None
    app = store.get(keys.app(str(value.get("app"))))
    if app is None or value.get("app_generation", app.create_revision) != app.create_revision:
        return None  # its app is gone, or this is another app of the same name
    return TokenRecord(value["id"], value["app"], value.get("name", ""), value.get("expires_at"),
                       bool(value.get("revoked")))
