"""Bad input to the admin API is refused with a 4xx whose message says what to do, and
changes nothing (the etcd revision stays where it was): names with a newline or another
control character, numbers that are not finite, bodies over the limit (413 before the body
is read, also on the unauthenticated /v1/join), an env or secrets too big for etcd, env and
secret names that are not POSIX names.

Real etcd; the Flask test client for the rules, the API under its real server (cheroot) for the body
limit on the wire."""

from __future__ import annotations

import base64
import socket
import time

import pytest

from tests.api.conftest import CLUSTER_KEY, bearer, client_post, sealed_join
from vcapp.api.app import ApiConfig, create_app
from vcapp.api.body import MAX_JSON_BODY

pytestmark = pytest.mark.cluster

BIG = "1" + "0" * 400  # a number no float holds


@pytest.fixture
def api(etcd_url, node_dir):
    return create_app(ApiConfig.for_endpoints([etcd_url], "home-1", lambda: CLUSTER_KEY)).test_client()


@pytest.fixture
def blog(api, cluster):
    """The cluster with one app, blog."""
    assert api.post("/v1/apps", json={"name": "blog"}, headers=bearer(cluster.admin)).status_code == 201
    return cluster


def refused(api, cluster, method: str, path: str, status: int, message: str, json=None, data=None,
            headers: dict | None = None) -> None:
    """Send the request; assert its status, that the error has `message`, and that etcd did not change."""
    revision = cluster.store.revision()
    kwargs = {"json": json} if data is None else {"data": data, "content_type": "application/json"}
    response = getattr(api, method)(path, headers={**bearer(cluster.admin), **(headers or {})}, **kwargs)
    assert response.status_code == status, (path, response.get_data(as_text=True))
    assert message in response.json["error"], (path, response.json)
    assert cluster.store.revision() == revision, f"{method} {path} changed etcd"


NAMES = [
    ("post", "/v1/apps", {"name": "x\n"}, "app name 'x\\n' is not valid"),
    ("post", "/v1/apps", {"name": "blog2", "volumes": [{"source": "data\n", "destination": "/data"}]},
     "volume name 'data\\n'"),
    ("post", "/v1/apps/blog%0A/tokens", {"name": "alice"}, "app name 'blog\\n' is not valid"),
    ("get", "/v1/apps/blog%0A", None, "app name 'blog\\n' is not valid"),
    ("delete", "/v1/apps/blog%0A", None, "app name 'blog\\n' is not valid"),
    ("post", "/v1/apps/blog/tokens", {"name": "alice\nbob"}, "has control characters"),
    ("post", "/v1/tokens/admin", {"name": "ops\tteam"}, "has control characters"),
    ("post", "/v1/tokens/join", {"name": "home\x1b[31m"}, "has control characters"),
    ("post", "/v1/apps/blog/domains", {"host": "www.blog\n.org"}, "is not a host name"),
    ("post", "/v1/apps/blog/volumes", {"name": "data\n", "size": "1G"}, "volume name 'data\\n'"),
    ("post", "/v1/apps/blog%0A/bucket", None, "app name 'blog\\n' is not valid"),
    ("put", "/v1/apps/blog/secrets", {"secrets": {"TOKEN\n": "x"}}, "secret name 'TOKEN\\n' is not valid"),
    ("put", "/v1/apps/blog/secrets", {"secrets": {"1ST": "x"}}, "secret name '1ST' is not valid"),
    ("put", "/v1/apps/blog/secrets", {"secrets": {"A": "x\x00y"}}, "no NUL"),
    ("delete", "/v1/apps/blog/secrets", {"names": ["TOKEN\n"]}, "secret name 'TOKEN\\n' is not valid"),
    ("post", "/v1/apps", {"name": "envy", "env": {"MODE\n": "x"}}, "env: 'MODE\\n' is not a variable name"),
    ("post", "/v1/apps", {"name": "envy", "env": {"2FA": "x"}}, "env: '2FA' is not a variable name"),
    ("post", "/v1/apps", {"name": "envy", "env": {"A": "x\x00"}}, "NUL"),
    ("post", "/v1/apps/blog/exec", {"command": "ls", "instance": "0\n"}, "instance: '0\\n' is not an instance name"),
    ("post", "/v1/apps/blog/exec", {"command": "ls\x00"}, "one shell command line"),
    ("post", "/v1/apps/blog/exec", {"command": "x" * 5000}, "at most 4096 characters"),
    ("post", "/v1/apps/blog/run", {"command": "  "}, "one shell command line"),
    ("get", "/v1/apps/blog/logs?since=1h%0A", None, "give a duration like 30s, 15m, 1h or 2d"),
    ("get", "/v1/apps/blog/logs?source=kernel", None, "source: 'kernel' is not one of all, app, router"),
]


@pytest.mark.parametrize("method, path, body, message", NAMES, ids=[f"{m} {p} {b}" for m, p, b, _ in NAMES])
def test_names_with_a_newline_or_control_characters_are_refused(api, blog, method, path, body, message):
    refused(api, blog, method, path, 400, message, json=body)


NUMBERS = [
    ("post", "/v1/apps", '{"name": "n", "count": Infinity}', "Infinity is not a number"),
    ("post", "/v1/apps", '{"name": "n", "cpus": NaN}', "NaN is not a number"),
    ("post", "/v1/apps", '{"name": "n", "memory": 1e309}', "1e309 is too large a number"),
    ("post", "/v1/apps", '{"name": "n", "count": -Infinity}', "-Infinity is not a number"),
    ("post", "/v1/apps", '{"name": "n", "memory": "%sG"}' % BIG, "memory: must be between"),
    ("post", "/v1/apps", '{"name": "n", "port": 8080, "health": {"type": "tcp", "timeout_s": 1e300}}',
     "health.timeout_s: must be a number of seconds"),
    ("post", "/v1/apps/blog/scale", '{"count": 1e309}', "1e309 is too large a number"),
    ("post", "/v1/apps/blog/scale", '{"memory": "%sM"}' % BIG, "memory: must be between"),
    ("post", "/v1/apps/blog/tokens", '{"name": "a", "expires": 1e309}', "1e309 is too large a number"),
    ("post", "/v1/apps/blog/tokens", '{"name": "a", "expires": NaN}', "NaN is not a number"),
    ("post", "/v1/tokens/join", '{"expires": Infinity}', "Infinity is not a number"),
    ("post", "/v1/tokens/join", '{"uses": 1e309}', "1e309 is too large a number"),
    ("post", "/v1/apps/blog/volumes", '{"name": "data", "size": "%sG"}' % BIG, "size: at most"),
    ("get", "/v1/events?limit=" + BIG, None, "limit"),
    ("post", "/v1/apps/blog/rollback", '{"release": "%s"}' % ("9" * 5000), "is not a release number"),
    ("post", "/v1/apps/blog/rollback", '{"release": "\u00b2"}', "is not a release number"),
]


@pytest.mark.parametrize("method, path, raw, message", NUMBERS, ids=[f"{m} {p} {r}"[:80] for m, p, r, _ in NUMBERS])
def test_numbers_that_are_not_finite_are_a_400(api, blog, method, path, raw, message):
    if raw is None:
        refused(api, blog, method, path, 400, message)
    else:
        refused(api, blog, method, path, 400, message, data=raw.encode())


def env_of(size: int, values: int) -> dict:
    return {f"V{i}": "x" * size for i in range(values)}


SIZES = [
    ("post", "/v1/apps", {"name": "envy", "env": env_of(33 * 1024, 1)}, 400, "each value may be at most 32 KiB"),
    ("post", "/v1/apps", {"name": "envy", "env": env_of(30 * 1024, 3)}, 400, "at most 64 KiB"),
    ("post", "/v1/apps", {"name": "envy", "env": env_of(1024 * 1024, 10)}, 413, "request body too large"),
    ("put", "/v1/apps/blog/secrets", {"secrets": env_of(60 * 1024, 3)}, 400, "at most 128 KiB"),
    ("put", "/v1/apps/blog/secrets", {"secrets": {"CERT": "x" * (65 * 1024)}}, 400, "at most 65536 bytes"),
]


@pytest.mark.parametrize("method, path, body, status, message", SIZES,
                         ids=["value", "total", "10 MB env", "secrets total", "secret value"])
def test_an_env_or_secrets_too_big_is_refused_not_a_503(api, blog, method, path, body, status, message):
    refused(api, blog, method, path, status, message, json=body)


def test_a_body_over_the_limit_is_a_413_also_without_a_token(api, blog):
    revision = blog.store.revision()
    response = api.post("/v1/join", data=b"{" + b" " * MAX_JSON_BODY + b"}", content_type="application/json")
    assert response.status_code == 413
    assert "request body too large" in response.json["error"] and "1 MiB" in response.json["error"]
    assert blog.store.revision() == revision


def test_a_machine_named_with_a_newline_does_not_join(api, blog):
    revision = blog.store.revision()
    node = {"name": "home-2\n", "site": "home", "addr": "10.0.0.2", "api_url": "http://10.0.0.2:7180",
            "resources": {"cpus": 2, "memory_mb": 4000, "free_memory_mb": 1000, "disk_mb": 50_000,
                          "free_disk_mb": 20_000}, "version": "0.1.0"}
    answer = sealed_join(client_post(api), blog.join, node)
    assert answer.status_code == 400, answer.json
    assert "machine name 'home-2\\n'" in answer.json["error"]
    assert blog.store.revision() == revision


def test_a_name_with_a_newline_makes_no_repository(api, blog, node_dir):
    """The app blog exists: "blog\n" once passed as its name and made a repository "blog\n.git"."""
    auth = base64.b64encode(f"git:{blog.admin}".encode()).decode()
    revision = blog.store.revision()
    response = api.get("/git/blog%0A.git/info/refs?service=git-receive-pack",
                       headers={"Authorization": f"Basic {auth}"})
    assert response.status_code in (400, 404)
    assert sorted(p.name for p in (node_dir / "git").iterdir()) == ["blog.git"]
    assert blog.store.revision() == revision


def read_answer(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
            dict(line.split(b": ", 1) for line in data.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]
                 if b": " in line).get(b"Content-Length", b"0")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_the_server_answers_413_before_the_body_arrives(served):
    """Only the headers of a 10 MB join are sent: the API answers at once, without waiting for the body."""
    url, cluster, _ = served
    host, port = url.removeprefix("http://").split(":")
    revision = cluster.store.revision()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /v1/join HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 10485760\r\n\r\n{")
        started = time.monotonic()
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"request body too large (10485760 bytes)" in answer
    assert time.monotonic() - started < 5
    assert cluster.store.revision() == revision


def test_the_server_cuts_a_chunked_body_at_the_limit(served):
    """A body without a length is read only up to the limit, then refused."""
    url, cluster, _ = served
    host, port = url.removeprefix("http://").split(":")
    revision = cluster.store.revision()
    chunk = b" " * 65536
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /v1/join HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        sock.sendall(b"1\r\n{\r\n")
        sent = 0
        try:
            while sent <= 2 * MAX_JSON_BODY:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except OSError:
            pass  # the server may close once it refused
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:600]
    assert b"request body too large" in answer
    assert cluster.store.revision() == revision
