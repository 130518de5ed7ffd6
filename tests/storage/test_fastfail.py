"""storage/fastfail.py on this machine's own network stack: towards a machine marked dead, new
storage connections are refused at once and the open ones are aborted, so SeaweedFS's
clients (a filer's stream to the old master leader above all) move on to the live ones."""

from __future__ import annotations

import os
import socket

import pytest

from storage import fastfail
from storage.host import LocalHost

# An address of the loopback network nothing else uses; the rule is only ever about it.
DEAD = "127.0.0.93"
MASTER_GRPC = 19333  # a storage port (SeaweedFS master gRPC)
ETCD = 12379  # stands for the etcd client port: not a storage port, aborted only when asked
HERE = "127.0.0.94"  # this machine's own storage servers, which the dead machine had dialled


@pytest.fixture
def master():
    if os.geteuid() != 0:
        pytest.fail("fastfail changes iptables rules: run the tests as root")
    servers = {}
    for port in (MASTER_GRPC, ETCD):
        servers[port] = socket.socket()
        servers[port].setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        servers[port].bind((DEAD, port))
        servers[port].listen()
    host = LocalHost("here")
    try:
        yield servers, host
    finally:
        fastfail.mark_alive(host, DEAD)
        for server in servers.values():
            server.close()


def test_a_dead_machines_storage_connections_fail_at_once_the_open_ones_too(master):
    servers, host = master
    streams = {port: socket.create_connection((DEAD, port), timeout=2) for port in servers}
    peers = [servers[port].accept()[0] for port in servers]
    fastfail.mark_dead(host, DEAD, abort_also=(ETCD,))
    # Open connections that only wait for answers (a filer's stream to the master leader, its
    # etcd client's) must end now, not when a packet they never send would hit the rule.
    for stream in streams.values():
        stream.settimeout(2)
        with pytest.raises((ConnectionAbortedError, ConnectionResetError)):
            stream.recv(1)
    socket.create_connection((DEAD, ETCD), timeout=2).close()  # etcd stays reachable for its return
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((DEAD, MASTER_GRPC), timeout=2)
    assert DEAD in fastfail.marked_dead(host)
    fastfail.mark_alive(host, DEAD)
    socket.create_connection((DEAD, MASTER_GRPC), timeout=2).close()
    assert DEAD not in fastfail.marked_dead(host)
    for peer in peers:
        peer.close()


def test_the_dead_machines_streams_into_our_storage_servers_are_aborted_too(master):
    """A volume server's heartbeat stream into our master: the master drops that volume
    server only when the stream ends, which over a black hole is gRPC keepalive's minute."""
    _, host = master
    ours = socket.socket()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ours.bind((HERE, MASTER_GRPC))
    ours.listen()
    theirs = socket.socket()
    theirs.bind((DEAD, 0))
    theirs.connect((HERE, MASTER_GRPC))
    stream, _ = ours.accept()
    other = socket.create_connection((HERE, MASTER_GRPC), timeout=2)  # from a live machine: kept
    kept, _ = ours.accept()
    try:
        fastfail.mark_dead(host, DEAD)
        stream.settimeout(2)
        with pytest.raises((ConnectionAbortedError, ConnectionResetError)):
            stream.recv(1)
        other.sendall(b"x")
        kept.settimeout(2)
        assert kept.recv(1) == b"x"
    finally:
        for s in (stream, theirs, other, kept, ours):
            s.close()
