"""etcd authentication (RBAC) for the cluster's etcd: its users, its one role, their passwords.

A cluster certificate (vcapp/etcdtls.py) only says "one of the cluster's machines"; the etcd
user says which one, and what it may do:

    user root       role root: users, roles, `auth enable/disable`, member add/promote/remove.
                    Password HMAC-SHA256(cluster key, "etcd-user/root"): every machine holds the
                    cluster key, so every machine can act as root. It does so only for
                    membership changes (vcapp/state/etcd_members.py), admitting a machine (adds
                    its user) and removing one (deletes it) -- never for reading or writing state.
    role machine    read and write keys.ROOT (/vc/...) and nothing else: it cannot change auth,
                    users, roles or the membership.
    user <machine>  role machine. Password HMAC-SHA256(cluster key, "etcd-user/<name>"): made on
                    the machine at init / join, and by the admitting machine when it creates the
                    user, so it never travels. Kept in <data dir>/keys/etcd/machine.auth (0600)
                    beside the machine's etcd key, where vcapp/store.Store reads it.
    the edge        no etcd user, no certificate, no cluster key.

Why passwords and not the certificate's name: vcapp reaches etcd through its JSON gateway
(etcd3gw), and the gateway cannot hand a certificate's Common Name on as the user (etcd PRs
#10366, #10392); with auth on it answers 400 to any client certificate that has a CN. So
machine certificates carry no CN (etcdtls.machine_subject), and every client, gateway or
gRPC, logs in with a password: POST /v3/auth/authenticate -> a token sent as the
"Authorization" header.

Measured on etcd 3.4.23 with client-cert-auth and auth on:
- no token: "user name is empty"; a wrong password: "authentication failed"; outside /vc/,
  `auth disable`, user add and member add as a machine: "permission denied" (code 7);
  member list and maintenance status need no user.
- tokens (--auth-token simple) live in the members' memory, not in the database: a member
  that restarts forgets them, and a token unused for TOKEN_TTL_S is forgotten ("invalid auth
  token"); each use renews it. A Store keeps one token per member it talks to and logs in
  wherever it is asked to. Deleting a user invalidates its tokens at once.
Whoever holds the cluster key is root in etcd, as they are the CA: RBAC keeps the machines'
everyday code (and a bug in it) from changing who may do what; it is not a wall between
machines (docs/SECURITY.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from etcd3gw.exceptions import Etcd3Exception

from vcapp.state import keys


class Store(Protocol):
    """What user and role administration needs of an etcd client (vcapp/store.Store is one):
    a call to etcd's JSON gateway. A protocol, so the store can import this module and not
    the other way round."""

    def call(self, path: str, payload: dict) -> dict: ...


ROOT_USER = "root"
ROOT_ROLE = "root"  # etcd's built-in role
MACHINE_ROLE = "machine"
RESERVED_NAMES = frozenset({ROOT_USER})  # a machine of that name would be root
# etcd's minimum. bcrypt's cost protects passwords people choose; these are 256-bit HMAC
# outputs, and each login (a Store's first request to a member, every TOKEN_TTL_S idle)
# would spend the default cost's ~60 ms of CPU on the member.
BCRYPT_COST = 4
# A day. A Store logs in again on expiry, but the SeaweedFS filers' etcd client does not
# always: its Authenticate retries carry the expired token, which etcd refuses ("invalid auth
# token") until the filer restarts. A token unused for a day is rare for a running filer. The
# TTL bounds how long a token that leaked off a machine stays good; deleting the machine's user
# (node remove) ends its tokens at once whatever the TTL.
TOKEN_TTL_S = 86400

# The answers after which a client logs in (again) and retries: none yet, expired or
# forgotten by a restarted member, or issued before a change of users/roles.
NEEDS_LOGIN = ("user name is empty", "invalid auth token", "revision in header is old")


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str

    def __repr__(self) -> str:  # never a password in a log or a traceback
        return f"Credentials(user={self.user!r})"


def _password(cluster_key: bytes, user: str) -> str:
    return hmac.new(cluster_key, f"etcd-user/{user}".encode(), hashlib.sha256).hexdigest()


def root(cluster_key: bytes) -> Credentials:
    return Credentials(ROOT_USER, _password(cluster_key, ROOT_USER))


def machine(cluster_key: bytes, name: str) -> Credentials:
    if name in RESERVED_NAMES:
        raise ValueError(f"{name!r} is etcd's administrator; a machine cannot be named so")
    return Credentials(name, _password(cluster_key, name))


# ---- this machine's file ------------------------------------------------------------------

def save(path: Path, creds: Credentials) -> None:
    """Write the machine's etcd login (0600, root only, like its etcd key)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"user": creds.user, "password": creds.password}, f)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load(path: Path | None) -> Credentials | None:
    """The login in `path`, or None when there is none (a store without auth: tests, dev)."""
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return Credentials(data["user"], data["password"])


# ---- administration (as root, or before auth is on) ----------------------------------------

def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _prefix_end(prefix: str) -> str:
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return raw.decode()


def _tolerate(store: Store, path: str, payload: dict, already: str) -> None:
    """A call that may have been made before (a retried join, a second init attempt)."""
    try:
        store.call(path, payload)
    except Etcd3Exception as e:
        if already not in f"{e.detail_text or ''} {e}":
            raise


def enable(store: Store, cluster_key: bytes, first: str) -> None:
    """Create root, the machine role and the first machine's user, then turn auth on.
    `store` is the founding machine's, before auth is on (no login needed yet)."""
    creds = root(cluster_key)
    _tolerate(store, "/auth/user/add", {"name": creds.user, "password": creds.password}, "already exists")
    store.call("/auth/user/grant", {"user": ROOT_USER, "role": ROOT_ROLE})
    add_machine(store, cluster_key, first)
    store.call("/auth/enable", {})


def _machine_role(store: Store) -> None:
    _tolerate(store, "/auth/role/add", {"name": MACHINE_ROLE}, "already exists")
    store.call("/auth/role/grant", {"name": MACHINE_ROLE, "perm": {
        "permType": "READWRITE", "key": _b64(keys.ROOT), "range_end": _b64(_prefix_end(keys.ROOT))}})


def add_machine(root_store: Store, cluster_key: bytes, name: str) -> None:
    """The etcd user of a machine being admitted (again, for a retried join: same password).
    The role is made sure of too: an etcd that never had auth set up (a test's) gets it."""
    creds = machine(cluster_key, name)
    _machine_role(root_store)
    _tolerate(root_store, "/auth/user/add", {"name": creds.user, "password": creds.password}, "already exists")
    root_store.call("/auth/user/changepw", {"name": creds.user, "password": creds.password})
    root_store.call("/auth/user/grant", {"user": creds.user, "role": MACHINE_ROLE})


def remove_machine(root_store: Store, name: str) -> None:
    """Delete a removed machine's user: its tokens stop working at once, on every member,
    before the revocation list has reached them."""
    if name in RESERVED_NAMES:
        raise ValueError(f"{name!r} is etcd's administrator, not a machine")
    _tolerate(root_store, "/auth/user/delete", {"name": name}, "user name not found")
