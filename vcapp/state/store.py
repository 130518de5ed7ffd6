"""The cluster state store: etcd v3 (through its JSON gateway, with etcd3gw), values as JSON.

`Store` talks to any of several etcd endpoints and moves to the next when one stops
answering, so a machine keeps working while a member is down. https endpoints are reached
with this machine's etcd certificate (vcapp/etcdtls.py): etcd admits no client without one.
With etcd auth on (vcapp/state/etcdauth.py) it also logs in as this machine's etcd user, on each
member it talks to when that member asks, and again when a token has expired.
It offers what the control plane needs and no more: JSON get/put/delete, prefix listings
with revisions, transactions with compare-and-swap, leases, and etcd membership calls.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

from etcd3gw import exceptions as etcd_errors
from etcd3gw.client import Etcd3Client

from vcapp import etcdtls
from vcapp.machine import cluster_key, data_dir
from vcapp.state import etcdauth, keys
from vcapp.state.gateway_http import GatewaySession

# A request to a live etcd on the cluster network answers in milliseconds; 5 s means the
# member is gone or partitioned, and the next endpoint should be tried.
REQUEST_TIMEOUT = 5.0


# An endpoint that did not answer (its machine died or is cut off) is tried last, by every Store
# of this process, for this long after: each Store (the API's threads have one each, the loops
# theirs) otherwise waited REQUEST_TIMEOUT on it once before moving on, and a request spread
# over the API's threads met a fresh wait on most of them (the edge learned of a death 8-10 s
# after it, where the node routers took 4 s). It is still tried when the others fail.
UNANSWERED_LAST_S = 30.0
_unanswered: dict[str, float] = {}  # endpoint -> time.monotonic() of its last failure to answer
# Hosts this process's peer watch suspects (vcapp/node/peerwatch_loop.py): their members are
# asked last too, before any request of ours waited on them; a black-holed machine's member
# otherwise held the publish of its suspicion REQUEST_TIMEOUT, and the failover with it.
_suspected_hosts: frozenset[str] = frozenset()
# How long a read shared inside Store.shared_reads may be answered again from memory: the
# daemon's tick (vcapp/node/daemon.py) opens one, so a loop that waits on a key within it
# still sees it change.
SHARED_READ_MAX_AGE_S = 0.5
SHAREABLE = ("/kv/range", "/cluster/member/list")  # reads; any other request is taken for a write
# The read that opens a block carrying answers over: one key, linearizable, for the cluster's
# revision (the root: etcd checks the permission of even an absent key, and a machine may read it).
GATE_READ = {"key": base64.b64encode(keys.ROOT.encode()).decode(), "limit": "1"}
GATE_KEY = json.dumps(GATE_READ, sort_keys=True)
# The gate read of a block that carries answers over may be this member's own copy (serializable:
# no round through the Raft leader) while a linearizable read of this Store was answered less
# than this long ago (Store.shared_reads). Each linearizable read makes the leader confirm its
# leadership with every member over the mesh: the gate of each machine's tick, twice a second,
# was most of an idle cluster's Raft traffic beside the heartbeats. A member cut off from its
# leader still answers serializable reads, with a state that stops moving: its daemon sees so
# within this long, as it did at its next tick before.
GATE_TRUSTS_MEMBER_S = 2.0
SERIALIZABLE_GATE_READ = dict(GATE_READ, serializable=True)
# etcd refuses a transaction of more operations than its --max-txn-ops (128 by default).
PREFETCH_MAX_RANGES = 100
# A member that has not applied a view's revision yet (another member answered its first read),
# or compacted it away: the read is made linearizable again, and starts a new view.
VIEW_GONE = ("future revision", "compacted")

# Answers of a member that cannot serve right now, while another member may: try the next.
# A member answering these cannot serve now; another may.
MEMBER_CANNOT_SERVE = ("no leader", "timed out", "not supported for learner", "not capable",
                       "unhealthy cluster", "leader changed", "stopped")
# The gateway's plain-text 404 for a route it does not serve (a member whose gateway is not
# ready: one just added, as after a dead member's removal); etcd's own "not found" errors (a
# lease that expired) come as JSON and mean what they say on every member.
ROUTE_NOT_SERVED = ("Not Found", "404 page not found")


def ask_last(hosts: Iterable[str]) -> None:
    """Every Store of this process asks the members on `hosts` (and no others, for this reason)
    after the rest, from now on: the machines the peer watch suspects."""
    global _suspected_hosts
    _suspected_hosts = frozenset(hosts)


def _asked_last(endpoint: str, now: float) -> bool:
    if now - _unanswered.get(endpoint, -1e9) < UNANSWERED_LAST_S:
        return True
    return bool(_suspected_hosts) and urlsplit(endpoint).hostname in _suspected_hosts


def member_cannot_serve(e: etcd_errors.Etcd3Exception) -> bool:
    return any(s in error_text(e) for s in MEMBER_CANNOT_SERVE) or (e.detail_text or "").strip() in ROUTE_NOT_SERVED


class StoreUnavailable(RuntimeError):
    """No etcd endpoint answered."""


def error_text(e: etcd_errors.Etcd3Exception) -> str:
    """What etcd said: etcd3gw keeps the answer's body in `detail_text`; str(e) is only the
    HTTP reason ("Bad Request")."""
    return f"{e.detail_text or ''} {e}"


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def _unb64(data: str) -> bytes:
    return base64.b64decode(data)


def prefix_end(prefix: str) -> str:
    """The range end that selects every key starting with `prefix`."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return raw.decode()


@dataclass(frozen=True)
class Entry:
    key: str
    value: Any
    mod_revision: int
    create_revision: int
    lease: int


@dataclass(frozen=True)
class Member:
    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool


# ---- transaction building blocks (plain dicts in the gateway's JSON form) --------------

def put_op(key: str, value: Any, lease: int = 0) -> dict:
    op = {"key": _b64(key), "value": _b64(json.dumps(value, sort_keys=True))}
    if lease:
        op["lease"] = str(lease)
    return {"request_put": op}


def delete_op(key: str, prefix: bool = False) -> dict:
    op = {"key": _b64(key)}
    if prefix:
        op["range_end"] = _b64(prefix_end(key))
    return {"request_delete_range": op}


def absent(key: str) -> dict:
    """Compare: the key does not exist."""
    return {"key": _b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": "0"}


def none_under(prefix: str) -> dict:
    """Compare: no key starts with `prefix` (etcd checks every key of the range; an empty range holds)."""
    return dict(absent(prefix), range_end=_b64(prefix_end(prefix)))


def unchanged(key: str, mod_revision: int) -> dict:
    """Compare: the key was not modified since we read it at `mod_revision` (0 = absent)."""
    return {"key": _b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": str(mod_revision)}


class Store:
    def __init__(self, endpoints: Iterable[str], timeout: float = REQUEST_TIMEOUT, tls: etcdtls.Paths | None = None,
                 auth: etcdauth.Credentials | None = None):
        """`tls`: the CA and client certificate for https endpoints; this machine's (in its
        data dir) when not given. `auth`: the etcd login; the one beside `tls` when not given
        (none if there is no such file: an etcd without auth)."""
        self.endpoints = [e.rstrip("/") for e in endpoints]
        if not self.endpoints:
            raise ValueError("no etcd endpoint given")
        self.timeout = timeout
        self.tls = tls or etcdtls.paths(data_dir())
        self.auth = auth if auth is not None else etcdauth.load(self.tls.auth)
        self._clients = [self._client(e) for e in self.endpoints]
        # see shared_reads: payload -> (monotonic time, answer, revision it was read at)
        self._shared: dict[str, tuple[float, dict, int]] | None = None
        self._shared_thread = 0
        self._view: tuple[float, int] | None = None  # (monotonic time, revision) of this tick's first read
        self._carried: tuple[int, dict[str, dict]] = (0, {})  # the last block's answers at its last view
        self._linearized_at = -math.inf  # monotonic time the last linearizable range was sent
        self._newest_view = 0  # the highest revision a view of this Store was at: views never go back

    def with_auth(self, auth: etcdauth.Credentials) -> Store:
        """The same endpoints and certificate, another etcd user."""
        return Store(self.endpoints, self.timeout, self.tls, auth=auth)

    def as_root(self) -> Store:
        """This store as etcd's root, for users and membership (vcapp/state/etcdauth.py: every
        machine holding the cluster key can)."""
        return self.with_auth(etcdauth.root(cluster_key()))

    def _client(self, url: str) -> Etcd3Client:
        scheme, rest = url.split("://", 1)
        host, port = rest.rsplit(":", 1)
        # Not requests': its session costs twice the CPU a request (vcapp/state/gateway_http.py),
        # and lets REQUESTS_CA_BUNDLE override a session's CA.
        session = GatewaySession(url, ca=str(self.tls.ca), cert=(str(self.tls.cert), str(self.tls.key)))
        return Etcd3Client(host=host, port=int(port), protocol=scheme, timeout=self.timeout, api_path="/v3/",
                           session=session)

    def _post(self, client: Etcd3Client, path: str, payload: dict) -> dict:
        """One request; with a login, logged in first when etcd asks for it, then once more."""
        try:
            return client.post(client.get_url(path), json=payload)
        except etcd_errors.Etcd3Exception as e:
            if self.auth is None or not any(s in error_text(e) for s in etcdauth.NEEDS_LOGIN):
                raise
        self._login(client)
        return client.post(client.get_url(path), json=payload)

    def _login(self, client: Etcd3Client) -> None:
        client.session.headers.pop("Authorization", None)
        answer = client.post(client.get_url("/auth/authenticate"),
                             json={"name": self.auth.user, "password": self.auth.password})
        client.session.headers["Authorization"] = answer["token"]

    @contextmanager
    def shared_reads(self, gate_on_member: bool = False):
        """Within the block, this thread's reads are one view of the cluster: the first range
        request is linearizable and gives the view's revision; the next ones read this
        member's copy at that revision (serializable, no round through the Raft leader), and
        identical ones share one answer. A view lasts SHARED_READ_MAX_AGE_S; any other request
        (a write, a txn, a lease) ends it first, so what this thread wrote is read back.

        The daemon's tick opens one. Each linearizable read makes the etcd leader confirm its
        leadership with a heartbeat to every member: the loops' ~110 reads a second on the
        controller of an idle three-machine cluster, most of them the same ones, kept ~400
        packets a second going through every machine's WireGuard.

        A block whose reads all ended on one view passes their answers to the next block of this
        Store: that one begins with a single linearizable read of one key, and when the cluster's
        revision is still the view's (nothing was written meanwhile, no lease ended) the answers
        are the cluster's state now, and serve its reads without asking etcd. An idle cluster's
        tick is then one request instead of one per distinct read (~14 per tick on each machine:
        ~85 range requests a second on the etcd member every daemon asked first).

        With `gate_on_member` (the daemon's tick), that read is the member's own copy while this
        Store's last linearizable read is recent (GATE_TRUSTS_MEMBER_S, `_gate_read`)."""
        self._shared, self._shared_thread, self._view = {}, threading.get_ident(), None
        revision, answers = self._carried
        self._carried = (0, {})
        if answers:
            now = time.monotonic()
            gate = self._gate_read(now, gate_on_member)
            self._view = (now, int(gate["header"]["revision"]))
            if self._view[1] == revision:
                self._shared = {key: (now, answer, revision) for key, answer in answers.items()}
            else:
                self._shared = self._prefetch(answers, self._view[1], now)
            self._shared[GATE_KEY] = (now, gate, self._view[1])  # Store.revision() asks the same
        try:
            yield self
        finally:
            shared, view = self._shared, self._view
            self._shared, self._view = None, None
            if shared and view:
                self._carried = (view[1], {key: hit[1] for key, hit in shared.items() if hit[2] == view[1]})
            if view:
                self._newest_view = max(self._newest_view, view[1])

    def _prefetch(self, answers: dict[str, dict], revision: int, now: float) -> dict[str, tuple[float, dict, int]]:
        """The ranges the last block read (the keys of `answers`), read again at `revision` in one
        read-only transaction: a block reads what the one before it read, and each request through
        etcd's JSON gateway costs a few ms of CPU in etcd and as much here (bench/footprint.py:
        after each of an idle cluster's ~20 writes a minute, every daemon's tick asked ~14 ranges
        one by one). Nothing when the member cannot serve it: the block's reads then ask for
        themselves."""
        payloads = {key: json.loads(key) for key in answers if key != GATE_KEY}
        wanted = [key for key, payload in payloads.items() if "key" in payload][:PREFETCH_MAX_RANGES]  # not members
        if not wanted:
            return {}
        ops = [{"request_range": dict(payloads[key], revision=str(revision), serializable=True)} for key in wanted]
        try:
            result = self._call("/kv/txn", {"compare": [], "success": ops, "failure": []})
        except etcd_errors.Etcd3Exception:  # the revision compacted, a range it may not read...
            return {}
        responses = result.get("responses") or []
        if len(responses) != len(wanted):
            return {}
        out = {}
        for key, response in zip(wanted, responses):
            answer = response.get("response_range") or {}
            out[key] = (now, dict(answer, header=result.get("header", {})), revision)
        return out

    def _gate_read(self, now: float, on_member: bool) -> dict:
        """The cluster's revision for a block that carries answers over: `on_member`, this member's
        copy of it while a linearizable read was answered within GATE_TRUSTS_MEMBER_S and the copy is not
        behind a view this Store had (a member that restarted and catches up, or another member
        than the last one), else a linearizable read."""
        if on_member and now - self._linearized_at < GATE_TRUSTS_MEMBER_S:
            gate = self._call("/kv/range", SERIALIZABLE_GATE_READ)
            if int(gate["header"]["revision"]) >= self._newest_view:
                return gate
        gate = self._call("/kv/range", GATE_READ)
        self._linearized_at = now
        return gate

    def call(self, path: str, payload: dict) -> dict:
        shared = self._shared
        if shared is None:
            return self._call(path, payload)
        if path not in SHAREABLE:
            shared.clear()
            self._view = None
            return self._call(path, payload)
        if threading.get_ident() != self._shared_thread:
            return self._call(path, payload)
        key, now = json.dumps(payload, sort_keys=True), time.monotonic()
        hit = shared.get(key)
        if hit and now - hit[0] <= SHARED_READ_MAX_AGE_S:
            return hit[1]
        result, revision = self._read_in_view(path, payload, now)
        shared[key] = (now, result, revision)
        return result

    def _read_in_view(self, path: str, payload: dict, now: float) -> tuple[dict, int]:
        """The answer, and the revision of the cluster it shows (0: one no later block may trust:
        a member list, which no revision counts, or a read at a revision of its own)."""
        view = self._view
        if path == "/kv/range" and "revision" not in payload and view and now - view[0] <= SHARED_READ_MAX_AGE_S:
            try:
                return self._call(path, dict(payload, revision=str(view[1]), serializable=True)), view[1]
            except etcd_errors.Etcd3Exception as e:
                if not any(s in error_text(e) for s in VIEW_GONE):
                    raise
        result = self._call(path, payload)
        if path == "/kv/range" and "revision" not in payload:
            self._linearized_at = now
            self._view = (now, int(result["header"]["revision"]))
            return result, self._view[1]
        return result, 0

    def _call(self, path: str, payload: dict) -> dict:
        """POST to the gateway, trying the endpoints in the order given (a machine's own member
        first), those that did not answer or could not serve lately (in any Store of this
        process) or whose machine the peer watch suspects last. The order given comes back once
        the first endpoint answers again: a Store that stayed with whichever member answered
        once (its own member was still starting) sent every daemon's reads over the mesh to one
        machine's member for good (bench/footprint.py: 37 requests a second on it, ~1 on the others)."""
        errors = []
        now = time.monotonic()
        order = sorted(range(len(self._clients)), key=lambda i: _asked_last(self.endpoints[i], now))
        for i in order:
            endpoint = self.endpoints[i]
            try:
                result = self._post(self._clients[i], path, payload)
            except (etcd_errors.ConnectionFailedError, etcd_errors.ConnectionTimeoutError) as e:
                errors.append(f"{endpoint}: {type(e).__name__}")
                _unanswered[endpoint] = time.monotonic()
                continue
            except etcd_errors.Etcd3Exception as e:
                if member_cannot_serve(e):
                    errors.append(f"{endpoint}: {error_text(e).strip()}")
                    _unanswered[endpoint] = time.monotonic()
                    continue
                raise
            _unanswered.pop(endpoint, None)
            return result
        raise StoreUnavailable("no etcd endpoint answered (" + "; ".join(errors) + ")")

    # ---- key/value ---------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        kvs = self.call("/kv/range", {"key": _b64(key)}).get("kvs", [])
        return self._entry(kvs[0]) if kvs else None

    def value(self, key: str, default: Any = None) -> Any:
        entry = self.get(key)
        return entry.value if entry else default

    def list(self, prefix: str, limit: int = 0, descending: bool = False, start: str = "",
             revision: int = 0) -> list[Entry]:
        """Keys under `prefix` in key order (from `start`, inclusive, when given); as they were
        at `revision` when given (several reads at one revision are one consistent view)."""
        payload = {"key": _b64(start or prefix), "range_end": _b64(prefix_end(prefix)), "sort_target": "KEY",
                   "sort_order": "DESCEND" if descending else "ASCEND"}
        if limit:
            payload["limit"] = str(limit)
        if revision:
            payload["revision"] = str(revision)
        return [self._entry(kv) for kv in self.call("/kv/range", payload).get("kvs", [])]

    def newest_change(self, prefix: str) -> int:
        """The mod revision of the most recently written key under `prefix` (0: none). One
        key, no value: a cheap question whether something was put there since the last look
        (a deletion does not show)."""
        payload = {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)), "sort_target": "MOD",
                   "sort_order": "DESCEND", "limit": "1", "keys_only": True}
        kvs = self.call("/kv/range", payload).get("kvs", [])
        return int(kvs[0].get("mod_revision", 0)) if kvs else 0

    def count(self, prefix: str) -> int:
        payload = {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)), "count_only": True}
        return int(self.call("/kv/range", payload).get("count", 0))

    def put(self, key: str, value: Any, lease: int = 0) -> int:
        op = put_op(key, value, lease)["request_put"]
        return int(self.call("/kv/put", op)["header"]["revision"])

    def delete(self, key: str, prefix: bool = False) -> int:
        op = delete_op(key, prefix)["request_delete_range"]
        return int(self.call("/kv/deleterange", op).get("deleted", 0))

    def txn(self, compare: list[dict], success: list[dict], failure: list[dict] | None = None) -> bool:
        """All-or-nothing: apply `success` if every compare holds, else `failure`."""
        result = self.call("/kv/txn", {"compare": compare, "success": success, "failure": failure or []})
        return bool(result.get("succeeded", False))

    def revision(self) -> int:
        return int(self.call("/kv/range", GATE_READ)["header"]["revision"])

    @staticmethod
    def _entry(kv: dict) -> Entry:
        raw = _unb64(kv.get("value", ""))
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            value = raw.decode(errors="replace")
        return Entry(
            key=_unb64(kv["key"]).decode(),
            value=value,
            mod_revision=int(kv.get("mod_revision", 0)),
            create_revision=int(kv.get("create_revision", 0)),
            lease=int(kv.get("lease", 0)),
        )

    # ---- leases ------------------------------------------------------------------------

    def grant(self, ttl: int) -> int:
        return int(self.call("/lease/grant", {"TTL": str(ttl), "ID": "0"})["ID"])

    def keepalive(self, lease: int) -> int:
        """Refresh a lease; returns its remaining TTL (0 if it has already expired)."""
        try:
            result = self.call("/lease/keepalive", {"ID": str(lease)})
        except etcd_errors.Etcd3Exception as e:
            if "lease not found" in error_text(e):
                return 0
            raise
        return int(result.get("result", {}).get("TTL", 0))

    def revoke(self, lease: int) -> None:
        try:
            self.call("/kv/lease/revoke", {"ID": str(lease)})
        except etcd_errors.Etcd3Exception:
            pass  # already expired: the keys are gone either way

    # ---- membership ----------------------------------------------------------------------

    def members(self) -> list[Member]:
        return [
            Member(
                id=int(m["ID"]),
                name=m.get("name", ""),
                peer_urls=tuple(m.get("peerURLs", [])),
                client_urls=tuple(m.get("clientURLs", [])),
                is_learner=bool(m.get("isLearner", False)),
            )
            for m in self.call("/cluster/member/list", {}).get("members", [])
        ]

    def member_add(self, peer_url: str, learner: bool = True) -> tuple[Member, list[Member]]:
        result = self.call("/cluster/member/add", {"peerURLs": [peer_url], "isLearner": learner})
        added = result["member"]
        member = Member(int(added["ID"]), added.get("name", ""), tuple(added.get("peerURLs", [])),
                        tuple(added.get("clientURLs", [])), bool(added.get("isLearner", False)))
        return member, self.members()

    def member_promote(self, member_id: int) -> None:
        self.call("/cluster/member/promote", {"ID": str(member_id)})

    def member_remove(self, member_id: int) -> None:
        self.call("/cluster/member/remove", {"ID": str(member_id)})

    def healthy(self) -> bool:
        try:
            self.call("/maintenance/status", {})
            return True
        except (StoreUnavailable, etcd_errors.Etcd3Exception):
            return False


def per_thread_store(endpoints: list[str] | Callable[[], list[str]]) -> Callable[[], Store]:
    """A factory giving each thread its own Store (and HTTP connections), reused across calls.

    A Store reorders its endpoints when one fails and holds a requests session, neither of
    which is meant to be shared between threads. `endpoints` may be a callable: when what it
    returns changes (members come and go), the thread's Store is made anew, so a long-lived
    server never keeps talking only to the members it knew at start."""
    source = endpoints if callable(endpoints) else (lambda: endpoints)
    local = threading.local()

    def store() -> Store:
        wanted = list(source())
        if getattr(local, "store", None) is None or local.wanted != wanted:
            local.store, local.wanted = Store(wanted), wanted
        return local.store

    return store


def wait_healthy(store: Store, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not store.healthy():
        if time.monotonic() > deadline:
            raise StoreUnavailable(f"etcd at {', '.join(store.endpoints)} not healthy after {timeout:.0f}s")
        time.sleep(0.2)
