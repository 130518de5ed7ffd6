"""The sealed join (vcapp/joinbox.py): only the cluster opens a request, only the machine that
asked opens the answer, and any altered byte is refused."""

from __future__ import annotations

import base64
import json

import pytest

from vcapp import joinbox, tokens

pytestmark = pytest.mark.unit

CLUSTER_KEY = bytes(range(32))
OTHER_CLUSTER_KEY = bytes(range(1, 33))
REQUEST = {"token": "vcjoin_x_0000beef_" + "A" * 43, "node": {"name": "office-1"}}
ANSWER = {"cluster_key": base64.b64encode(CLUSTER_KEY).decode(), "mesh": {"credential": "ab" * 32}}


def flip(box: str, at: int) -> str:
    raw = bytearray(base64.b64decode(box))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def test_a_request_opens_with_the_cluster_key_and_its_answer_with_the_machine_key():
    sealed = joinbox.seal_request(joinbox.cluster_public(CLUSTER_KEY), REQUEST)
    assert set(sealed.body) == {"key", "box"}
    assert REQUEST["token"] not in json.dumps(sealed.body)
    opened = joinbox.open_request(CLUSTER_KEY, sealed.body)
    assert opened.request == REQUEST
    wire = opened.seal_answer(ANSWER)
    assert set(wire) == {"box"} and ANSWER["cluster_key"] not in json.dumps(wire)
    assert sealed.open_answer(wire) == ANSWER


def test_another_cluster_cannot_open_a_request():
    sealed = joinbox.seal_request(joinbox.cluster_public(CLUSTER_KEY), REQUEST)
    with pytest.raises(joinbox.SealError, match="does not open with this key"):
        joinbox.open_request(OTHER_CLUSTER_KEY, sealed.body)


def test_only_the_machine_that_asked_opens_the_answer():
    public = joinbox.cluster_public(CLUSTER_KEY)
    mine, theirs = joinbox.seal_request(public, REQUEST), joinbox.seal_request(public, REQUEST)
    answer = joinbox.open_request(CLUSTER_KEY, mine.body).seal_answer(ANSWER)
    with pytest.raises(joinbox.SealError, match="does not open with this key"):
        theirs.open_answer(answer)
    # an answer sealed by someone without the cluster key (an edge that relays the join) is refused
    forged = joinbox.open_request(OTHER_CLUSTER_KEY, joinbox.seal_request(
        joinbox.cluster_public(OTHER_CLUSTER_KEY), REQUEST).body).seal_answer(ANSWER)
    with pytest.raises(joinbox.SealError):
        mine.open_answer(forged)


@pytest.mark.parametrize("at", [0, 11, 12, 20, -1])  # nonce, first cipher byte, tag
def test_a_tampered_box_is_refused(at):
    sealed = joinbox.seal_request(joinbox.cluster_public(CLUSTER_KEY), REQUEST)
    with pytest.raises(joinbox.SealError, match="altered on the way"):
        joinbox.open_request(CLUSTER_KEY, {"key": sealed.body["key"], "box": flip(sealed.body["box"], at)})
    answer = joinbox.open_request(CLUSTER_KEY, sealed.body).seal_answer(ANSWER)
    with pytest.raises(joinbox.SealError, match="altered on the way"):
        sealed.open_answer({"box": flip(answer["box"], at)})


def test_a_swapped_machine_key_is_refused():
    public = joinbox.cluster_public(CLUSTER_KEY)
    one, two = joinbox.seal_request(public, REQUEST), joinbox.seal_request(public, REQUEST)
    with pytest.raises(joinbox.SealError):
        joinbox.open_request(CLUSTER_KEY, {"key": two.body["key"], "box": one.body["box"]})


@pytest.mark.parametrize("body, message", [
    ({}, "key must be a base64 string"),
    ({"key": "not base64!", "box": "AA=="}, "key is not base64"),
    ({"key": base64.b64encode(b"short").decode(), "box": "AA=="}, "X25519 public key"),
    ({"key": base64.b64encode(bytes(32)).decode(), "box": "AA=="}, "not a usable X25519 public key"),
    ({"key": base64.b64encode(bytes(range(9, 41))).decode(), "box": "AA=="}, "too short"),
    ({"key": base64.b64encode(bytes(range(9, 41))).decode(), "box": 7}, "box must be a base64 string"),
])
def test_malformed_requests_say_what_is_wrong(body, message):
    with pytest.raises(joinbox.SealError, match=message):
        joinbox.open_request(CLUSTER_KEY, body)


def test_the_join_token_pins_the_cluster_join_key():
    public = joinbox.cluster_public(CLUSTER_KEY)
    token = tokens.new_join_token("acme", ["http://edge:8443/_mesh"], public)
    parsed = tokens.parse_join_token(str(token))
    assert parsed.join_key == public and parsed == token
    old = tokens.parse_join_token(str(tokens.new_join_token("acme", ["http://x:7180"])))
    assert old.join_key == ""
    assert joinbox.cluster_public(CLUSTER_KEY) != joinbox.cluster_public(OTHER_CLUSTER_KEY)
