"""A machine that stops answering probes has this machine's connections to its etcd member cut
(vcapp/node/peerwatch_loop.py `_fell`): a request already waiting there for an answer that will
never come is asked of another member at once, instead of after the Store's whole timeout. Real
etcd behind a member that accepts connections and never answers (a black-holed machine's), on
loopback; the real `ss -K`."""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

from vcapp.machine import ETCD_CLIENT_PORT
from vcapp.node.peerwatch_loop import PeerWatchLoop
from vcapp.state.store import REQUEST_TIMEOUT, Store, ask_last

KEY = "/vc/test/suspect-cut/key"
SILENT = "127.0.0.77"  # the fallen machine's address: loopback, nothing else listens there


def test_a_read_waiting_on_the_member_of_a_machine_that_falls_is_answered_by_another_at_once(etcd_url):
    silent = socket.socket()
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    silent.bind((SILENT, ETCD_CLIENT_PORT))
    silent.listen(16)  # the kernel completes the handshakes; nothing ever answers
    writer = Store([etcd_url])
    writer.put(KEY, {"n": 1})
    loop = PeerWatchLoop.__new__(PeerWatchLoop)  # `_fell` alone: no probes, no worker thread
    loop.prober = SimpleNamespace(suspects=lambda: {"home-9": 0.0}, targets={"home-9": (SILENT, 7180)})
    loop.worker = SimpleNamespace(wake=lambda: None)
    try:
        store = Store([f"http://{SILENT}:{ETCD_CLIENT_PORT}", etcd_url])  # the silent member first
        answers: list = []
        began = time.monotonic()
        reader = threading.Thread(target=lambda: answers.append(store.value(KEY)))
        reader.start()
        time.sleep(0.5)
        assert answers == []  # waiting on the silent member
        loop._fell("home-9", (SILENT, 7180))
        reader.join(REQUEST_TIMEOUT)
        assert answers == [{"n": 1}]
        assert time.monotonic() - began < 0.5 + 1.0, "the read waited for its timeout, not for the cut"
    finally:
        ask_last([])
        silent.close()
        writer.delete(KEY)
