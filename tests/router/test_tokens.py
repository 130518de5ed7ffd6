"""Token format, hashing, records and signed session values (pure)."""

import pytest

from router import session
from router.tokens import (TokenFormatError, TokenRecord, generate, hash_token, is_hash, is_token, new_id,
                           parse)

pytestmark = pytest.mark.unit

KEY = b"0123456789abcdef0123456789abcdef"


def test_generated_tokens_have_the_documented_shape_and_differ():
    a, b = generate(), generate()
    assert a != b
    assert a.startswith("vca_") and len(a) == 47 and is_token(a)


def test_parse_accepts_a_token_with_whitespace_and_rejects_damaged_ones():
    token = generate()
    assert parse(f"  {token}\n") == token
    for bad in ("", token[:-1], "vcb_" + token[4:], token + "x", token[:10] + "!" + token[11:]):
        with pytest.raises(TokenFormatError, match="copied all of it"):
            parse(bad)


def test_hash_is_sha256_hex_and_never_the_token():
    token = generate()
    h = hash_token(token)
    assert is_hash(h) and token not in h and h == hash_token(token)
    assert hash_token("vca_" + "A" * 43) == "2d9d81dfda21442c26e775a06401c7138a54e845f06fa2f3424f8f7c82634c5b"


def test_record_problem_names_revoked_expired_and_other_app():
    rec = TokenRecord("tok_1", "blog", "alice", expires_at=100.0)
    assert rec.problem("blog", 99.0) is None
    assert rec.problem("blog", 100.0) == "expired"
    assert rec.problem("shop", 50.0) == "wrong-app"
    assert TokenRecord("tok_1", "blog", "a", revoked=True).problem("blog", 0) == "revoked"
    assert TokenRecord("tok_1", "blog", "a").problem("blog", 1e12) is None


def test_ids_are_public_and_short():
    assert new_id().startswith("tok_") and new_id() != new_id()


def test_session_value_round_trips_for_its_app_only():
    h = hash_token(generate())
    value = session.sign(KEY, "blog", h, 1000)
    assert session.verify(KEY, value, "blog", 1001) == h
    assert session.verify(KEY, value, "shop", 1001) is None
    assert session.verify(b"another key of 32 bytes length!!", value, "blog", 1001) is None


def test_session_value_cannot_be_altered_or_outlive_its_maximum():
    h = hash_token(generate())
    value = session.sign(KEY, "blog", h, 1000)
    other = hash_token(generate())
    assert session.verify(KEY, value.replace(h, other), "blog", 1001) is None
    assert session.verify(KEY, value.replace(".1000.", ".9999."), "blog", 10000) is None
    assert session.verify(KEY, value, "blog", 1000 + session.MAX_SESSION_S + 1) is None
    assert session.verify(KEY, "garbage", "blog", 0) is None


def test_session_key_must_be_long_enough():
    with pytest.raises(ValueError, match="at least"):
        session.sign(b"short", "blog", "0" * 64, 0)
