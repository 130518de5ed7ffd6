"""Per-cluster container registry settings for builds: a mirror and credentials per registry.

    /vc/settings/registries/<host>  {host, mirror, insecure, username, password (sealed), added_at, by}

`vcapp registries add docker.io --mirror http://mirror.lan:5000 --insecure` makes every pull of
docker.io/... (a Dockerfile's `FROM node:20`, builder/images.py) try the mirror first;
`--username U --password-stdin` gives builds credentials for the registry (and its mirror).
The password is sealed with the cluster's secrets key (vcapp/state/secrets.py) and never shown.
Every machine's node daemon turns the records into a registries.conf.d drop-in (`dropin_text`)
and entries of the auth file builds use (`credentials`): vcapp/node/registry_loop.py.
"""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

from builder.registry import Credential
from vcapp.errors import BadRequest, NotFound, Unavailable
from vcapp.state import events, keys, secrets
from vcapp.state.store import Store

MAX_REGISTRIES = 32  # a cluster pulls from a handful; each is a drop-in entry on every machine
MAX_URL = 512
MAX_USERNAME = 255
MAX_PASSWORD = 4096  # registry tokens (JWTs, PATs) fit well below this
LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOST = re.compile(rf"({LABEL}(?:\.{LABEL})*)(?::(\d{{1,5}}))?")  # matched whole (fullmatch)
MIRROR_PATH = re.compile(r"(?:/[A-Za-z0-9._-]+)*/?")
USERNAME = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space; ':' refused apart (basic auth)
PASSWORD_WHAT = "the registry password"


def check_host(value) -> str:
    """host[:port] of a registry, lower case (BadRequest saying what to write)."""
    if not isinstance(value, str) or len(value) > 260:
        raise BadRequest("registry: give its host name, e.g. docker.io, ghcr.io or registry.example:5000")
    host = value.lower()
    match = HOST.fullmatch(host)
    if not match or len(match.group(1)) > 253 or (match.group(2) and not 1 <= int(match.group(2)) <= 65535):
        raise BadRequest(f"registry {value!r} is not a host name; write HOST or HOST:PORT, e.g. docker.io or "
                         "registry.example:5000")
    return host


def check_mirror(value) -> tuple[str, bool]:
    """A mirror URL http(s)://host[:port][/path] as registries.conf's location (host[:port][/path])
    and whether it is plain HTTP. "" or None: no mirror."""
    if value is None or value == "":
        return "", False
    if not isinstance(value, str) or len(value) > MAX_URL or any(ord(c) <= 0x20 or ord(c) == 0x7f for c in value):
        raise BadRequest(f"mirror: give a URL of at most {MAX_URL} characters without spaces or control "
                         "characters, e.g. http://mirror.lan:5000")
    parts = urlsplit(value)
    netloc = parts.netloc.lower()
    try:
        check_host(netloc)
        ok = parts.scheme in ("http", "https") and not parts.query and not parts.fragment \
            and "@" not in netloc and MIRROR_PATH.fullmatch(parts.path) is not None
    except BadRequest:
        ok = False
    if not ok:
        raise BadRequest(f"mirror {value!r} is not a registry URL; write http://HOST:PORT or https://HOST[/PATH], "
                         "e.g. http://mirror.lan:5000")
    return netloc + parts.path.rstrip("/"), parts.scheme == "http"


def check_login(username, password) -> tuple[str, str]:
    """Both or neither; bounded, no control characters ("" and "" for none)."""
    username = username or ""
    password = password or ""
    if not isinstance(username, str) or not isinstance(password, str):
        raise BadRequest("username and password are strings")
    if bool(username) != bool(password):
        raise BadRequest("give both a username and a password (--password-stdin), or neither")
    if username and (len(username) > MAX_USERNAME or not USERNAME.fullmatch(username) or ":" in username):
        raise BadRequest(f"username: printable characters without spaces or ':', at most {MAX_USERNAME}")
    if len(password) > MAX_PASSWORD or any(ord(c) < 0x20 or ord(c) == 0x7f for c in password):
        raise BadRequest(f"password: one line without control characters, at most {MAX_PASSWORD} characters")
    return username, password


def public(record: dict) -> dict:
    """What `vcapp registries list` shows: never the password, only whether there is one."""
    return {"host": record["host"], "mirror": record.get("mirror") or None,
            "insecure": bool(record.get("insecure")), "username": record.get("username") or None,
            "password": bool(record.get("password")), "added_at": record.get("added_at"), "by": record.get("by")}


def records(store: Store) -> list[dict]:
    """Every stored registry record (sealed passwords), by host."""
    found = [e.value for e in store.list(keys.REGISTRIES) if isinstance(e.value, dict) and e.value.get("host")]
    return sorted(found, key=lambda r: r["host"])


def listing(store: Store) -> list[dict]:
    return [public(r) for r in records(store)]


def add(store: Store, host, body: dict, who: str = "admin") -> dict:
    """Store (or replace) HOST's mirror and credentials; BadRequest for bad input (nothing changed)."""
    host = check_host(host)
    unknown = sorted(set(body) - {"mirror", "insecure", "username", "password"})
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}; allowed: mirror, insecure, username, password")
    mirror, plain = check_mirror(body.get("mirror"))
    insecure = body.get("insecure", False)
    if not isinstance(insecure, bool):
        raise BadRequest("insecure: true or false")
    username, password = check_login(body.get("username"), body.get("password"))
    if not mirror and not username and not insecure:
        raise BadRequest("give --mirror URL, --username with --password-stdin, or --insecure: "
                         "there is nothing to set for this registry otherwise")
    if store.value(keys.registry(host)) is None and len(records(store)) >= MAX_REGISTRIES:
        raise BadRequest(f"at most {MAX_REGISTRIES} registries; remove one first")
    record = {"host": host, "mirror": mirror, "insecure": insecure or plain, "username": username,
              "password": secrets.seal(password) if password else "", "added_at": time.time(), "by": who}
    store.put(keys.registry(host), record)
    what = ", ".join(filter(None, [mirror and f"mirror {mirror}", username and f"user {username}",
                                   record["insecure"] and "plain HTTP allowed"]))
    events.record(store, "settings", f"registry {host}: {what} (set by {who})")
    return public(record)


def remove(store: Store, host, who: str = "admin") -> dict:
    host = check_host(host)
    record = store.value(keys.registry(host))
    if record is None:
        raise NotFound(f"no settings for registry {host}; `vcapp registries list` shows them")
    store.delete(keys.registry(host))
    events.record(store, "settings", f"registry {host}: mirror and credentials removed (by {who})")
    return public(record)


# ---- what every machine writes (vcapp/node/registry_loop.py) ---------------------------------

def dropin_text(recs: list[dict]) -> str:
    """The registries.conf.d drop-in for these records (pure): each registry with its mirror
    tried first, plain HTTP where `insecure`. Values were validated (no quotes, no newlines)."""
    text = "# Written by the vcapp node daemon (vcapp/node/registry_loop.py): `vcapp registries`.\n"
    for rec in sorted(recs, key=lambda r: r["host"]):
        text += f'\n[[registry]]\nlocation = "{rec["host"]}"\n'
        if rec.get("insecure") and not rec.get("mirror"):
            text += "insecure = true\n"
        if rec.get("mirror"):
            text += f'[[registry.mirror]]\nlocation = "{rec["mirror"]}"\n'
            if rec.get("insecure"):
                text += "insecure = true\n"
    return text


def credentials(recs: list[dict], key: bytes | None = None) -> dict[str, Credential]:
    """Auth file entries: each registry with a login, and its mirror, get its credential.
    A password that no longer unseals (the cluster key was replaced) is left out."""
    out: dict[str, Credential] = {}
    for rec in recs:
        if not rec.get("username") or not rec.get("password"):
            continue
        try:
            password = secrets.unseal(rec["password"], PASSWORD_WHAT, key)
        except Unavailable:
            continue
        for location in filter(None, (rec["host"], rec.get("mirror"))):
            out[location] = Credential(rec["username"], password)
    return out
