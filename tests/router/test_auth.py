"""The forward_auth decision and the token cache, with an in-memory token store (pure)."""

import pytest

from router import session
from router.auth import AuthService, clean_uri
from router.tokencheck import LookupUnavailable, TokenChecker
from router.tokens import TokenRecord, generate, hash_token

pytestmark = pytest.mark.unit

KEY = b"k" * 32
NOW = 1_000_000.0


class Clock:
    def __init__(self, t: float = 0.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def store():
    token = generate()
    records = {hash_token(token): TokenRecord("tok_1", "blog", "alice", NOW + 3600)}
    calls = []

    def lookup(h):
        calls.append(h)
        return records.get(h)

    return token, records, calls, lookup


def service(lookup, mono=None):
    return AuthService(TokenChecker(lookup, clock=mono or Clock()), KEY, clock=lambda: NOW)


def test_bearer_token_lets_in_with_its_id(store):
    token, _, _, lookup = store
    resp = service(lookup).decide("blog", "/", f"Bearer {token}", "")
    assert resp.status.startswith("200") and ("X-Vcapp-Token-Id", "tok_1") in resp.headers


def test_missing_malformed_unknown_and_other_app_get_401_with_the_reason(store):
    token, _, _, lookup = store
    svc = service(lookup)
    cases = {
        ("blog", ""): b"needs an access token",
        ("blog", "Bearer nope"): b"not an access token",
        ("blog", f"Bearer {generate()}"): b"not recognised",
        ("shop", f"Bearer {token}"): b"another app",
    }
    for (app, authz), words in cases.items():
        resp = svc.decide(app, "/", authz, "")
        assert resp.status.startswith("401") and words in resp.body
        assert any(k == "WWW-Authenticate" for k, _ in resp.headers)


def test_token_link_redirects_to_clean_url_with_a_host_only_cookie(store):
    token, _, _, lookup = store
    resp = service(lookup).decide("blog", f"/a/b?x=1&token={token}&y=2", "", "")
    headers = dict(resp.headers)
    assert resp.status.startswith("302") and headers["Location"] == "/a/b?x=1&y=2"
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(session.COOKIE_NAME + "=") and token not in cookie
    assert all(a in cookie for a in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=3600"))
    assert "Domain" not in cookie


def test_cookie_lets_in_until_the_token_is_revoked(store):
    token, records, _, lookup = store
    mono = Clock()
    svc = service(lookup, mono)
    cookie = dict(svc.decide("blog", f"/?token={token}", "", "").headers)["Set-Cookie"].split(";")[0]
    assert svc.decide("blog", "/", "", cookie).status.startswith("200")
    records[hash_token(token)] = TokenRecord("tok_1", "blog", "alice", None, revoked=True)
    mono.t += 2.5  # past the cache TTL
    resp = svc.decide("blog", "/", "", cookie)
    assert resp.status.startswith("401") and b"revoked" in resp.body
    assert "Max-Age=0" in dict(resp.headers)["Set-Cookie"]


def test_forged_cookie_is_refused(store):
    _, _, _, lookup = store
    forged = session.sign(b"x" * 32, "blog", hash_token(generate()), int(NOW))
    resp = service(lookup).decide("blog", "/", "", f"{session.COOKIE_NAME}={forged}")
    assert resp.status.startswith("401") and b"session has ended" in resp.body


def test_checks_are_cached_positive_and_negative_for_the_ttl(store):
    token, _, calls, lookup = store
    mono = Clock()
    svc = service(lookup, mono)
    wrong = generate()
    for _ in range(5):
        svc.decide("blog", "/", f"Bearer {token}", "")
        svc.decide("blog", "/", f"Bearer {wrong}", "")
    assert len(calls) == 2
    mono.t += 2.1
    svc.decide("blog", "/", f"Bearer {token}", "")
    assert len(calls) == 3


def test_cache_is_bounded():
    checker = TokenChecker(lambda h: None, max_cached=3, clock=Clock())
    for i in range(10):
        checker.record(f"{i:064x}")
    assert len(checker._cache) == 3


def test_store_failure_is_not_a_decision():
    def broken(h):
        raise ConnectionError("etcd down")
    with pytest.raises(LookupUnavailable, match="etcd down"):
        service(broken).decide("blog", "/", f"Bearer {generate()}", "")


def test_wsgi_app_answers_503_when_the_store_is_down():
    def broken(h):
        raise ConnectionError("etcd down")
    seen = {}
    body = service(broken)({"PATH_INFO": "/check", "QUERY_STRING": "app=blog",
                            "HTTP_AUTHORIZATION": f"Bearer {generate()}"},
                           lambda status, headers: seen.update(status=status))
    assert seen["status"].startswith("503") and b"Try again" in b"".join(body)


def test_clean_uri_keeps_everything_but_the_token():
    assert clean_uri("/p?token=x") == "/p"
    assert clean_uri("/?a=1&token=x&b=") == "/?a=1&b="
