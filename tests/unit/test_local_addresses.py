"""The daemon waits for its mesh address before it starts etcd and the API: it reads the
kernel's routing trie for it (vcapp/node/daemon.py address_present)."""

from __future__ import annotations

import subprocess

import pytest

from vcapp.node.daemon import address_present, local_addresses

pytestmark = pytest.mark.unit

# A simulated machine's trie (trimmed): its backbone address, its mesh address, loopback.
TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 100.96.0.0/24 2 0 2
        |-- 100.96.0.0
           /24 link UNICAST
        |-- 100.96.0.10
           /32 host LOCAL
        |-- 100.96.0.255
           /32 link BROADCAST
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
     +-- 198.51.100.164/30 2 0 1
        |-- 198.51.100.164
           /30 link UNICAST
        |-- 198.51.100.165
           /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 100.96.0.10
        /32 host LOCAL
"""


def test_the_trie_names_the_machines_own_addresses_and_no_route_or_broadcast():
    assert local_addresses(TRIE) == {"100.96.0.10", "127.0.0.1", "198.51.100.165"}
    assert local_addresses("") == set()


def test_this_hosts_addresses_are_the_ones_ip_lists():
    listed = {line.split()[3].split("/")[0] for line in
              subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True)
              .stdout.splitlines()}
    assert listed and all(address_present(addr) for addr in listed)
    assert not address_present("198.18.255.254")  # the benchmarking range: on no interface here
