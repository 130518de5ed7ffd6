"""An etcd member that stopped answering costs one wait per process, not one per Store: the
API gives each of its threads a Store, and the loops have theirs (vcapp/state/store.py). A
member whose gateway does not serve yet (its plain "Not Found") gives way to the next one,
while etcd's own "not found" (an expired lease) still means what it says."""

from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest

from vcapp.state import store as store_mod
from vcapp.state.store import Store, StoreUnavailable

TIMEOUT = 1.0  # the Stores' request timeout here: what one wait on the silent member costs


def timed_get(store: Store) -> float:
    began = time.monotonic()
    store.get("/vc/test/anything")
    return time.monotonic() - began


def test_a_member_that_did_not_answer_is_asked_last_by_every_store_of_the_process(etcd_url, hanging_member):
    first = Store([hanging_member, etcd_url], timeout=TIMEOUT)
    assert timed_get(first) >= TIMEOUT  # it waited on the silent member once
    assert timed_get(first) < TIMEOUT / 2  # and then asks the live one first
    for _ in range(3):  # new Stores, as each API thread has: no wait
        assert timed_get(Store([hanging_member, etcd_url], timeout=TIMEOUT)) < TIMEOUT / 2


class AnsweredBy(Store):
    """A Store that records which endpoint each request went to."""

    def __init__(self, endpoints):
        super().__init__(endpoints, timeout=TIMEOUT)
        self.asked: list[str] = []

    def _post(self, client, path, payload):
        self.asked.append(client.get_url(path).split("/v3/")[0])
        return super()._post(client, path, payload)


def test_the_first_member_given_is_asked_first_again_once_it_answers(etcd_url, monkeypatch):
    """A daemon lists its own member first: a moment when it could not answer (still starting)
    must not send the daemon's reads to another machine's member for good."""
    own = etcd_url.replace("127.0.0.1", "localhost")  # the same etcd by another name
    monkeypatch.setattr(store_mod, "UNANSWERED_LAST_S", 0.3)
    monkeypatch.setitem(store_mod._unanswered, own, time.monotonic())  # it did not answer just now
    store = AnsweredBy([own, etcd_url])
    store.get("/vc/test/anything")
    assert store.asked == [etcd_url]
    time.sleep(0.4)
    store.get("/vc/test/anything")
    store.get("/vc/test/anything")
    assert store.asked == [etcd_url, own, own]


def test_a_silent_member_is_still_asked_when_no_other_answers(hanging_member):
    store = Store([hanging_member], timeout=TIMEOUT)
    for _ in range(2):
        began = time.monotonic()
        with pytest.raises(StoreUnavailable, match=f"no etcd endpoint answered .*{hanging_member}"):
            store.get("/vc/test/anything")
        assert time.monotonic() - began >= TIMEOUT


def test_the_members_of_machines_the_peer_watch_suspects_are_asked_last_before_any_wait(etcd_url):
    """A black-holed machine's member: the daemon's peer watch suspects the machine before any
    request waited on its member, and the publish of that suspicion must not wait on it."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.2", 0))  # another machine's address, as far as the Store can tell
        silent.listen(16)
        member = f"http://127.0.0.2:{silent.getsockname()[1]}"
        try:
            store_mod.ask_last(["127.0.0.2"])
            assert timed_get(Store([member, etcd_url], timeout=TIMEOUT)) < TIMEOUT / 2
        finally:
            store_mod.ask_last([])
        assert timed_get(Store([member, etcd_url], timeout=TIMEOUT)) >= TIMEOUT  # trusted again: asked first


@pytest.fixture
def unserving_member():
    """Answers every request as etcd's gateway answers a route it does not serve (seen from a
    member added a moment before): 404, text/plain "Not Found"."""
    class NotServing(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = b"Not Found\n"
            self.send_response(404)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotServing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_member_whose_gateway_does_not_serve_yet_gives_way_to_the_next(etcd_url, unserving_member):
    store = Store([unserving_member, etcd_url], timeout=TIMEOUT)
    store.put("/vc/test/written", {"through": "the next member"})
    assert store.value("/vc/test/written") == {"through": "the next member"}
    assert store.keepalive(123456789) == 0  # etcd's JSON "lease not found" is an answer, not a refusal
    with pytest.raises(StoreUnavailable, match=f"{unserving_member}: Not Found"):
        Store([unserving_member], timeout=TIMEOUT).get("/vc/test/written")
