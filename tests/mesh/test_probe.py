"""The peer watch's probe (mesh/probe.py echo, vcapp/node/peerwatch_loop.py probe) in network
namespaces of its own: an answering machine, one that drops everything, one with no route."""

from __future__ import annotations

import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def in_netns(setup: str, code: str) -> str:
    """Run `code` (Python) in a fresh network namespace after the shell `setup`; its stdout."""
    script = f"{setup}\nexec {shlex.quote(sys.executable)} -c {shlex.quote(textwrap.dedent(code))}"
    proc = subprocess.run(["unshare", "--net", "sh", "-ec", script], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


PROBES = """
import time
from mesh.probe import echo
from vcapp.node.peerwatch_loop import probe
began = time.monotonic()
rtt = echo("127.0.0.1", 0.5)
took = time.monotonic() - began
print(rtt is not None, probe("127.0.0.1", 9, timeout=0.5), round(took, 1))
"""


def test_an_echo_is_answered_by_an_up_machine_even_without_a_listening_port():
    answered, probed, _ = in_netns("ip link set lo up", PROBES).split()
    assert (answered, probed) == ("True", "True")


def test_a_machine_that_drops_everything_is_a_miss_after_the_timeout():
    answered, probed, took = in_netns("ip link set lo up; iptables -A INPUT -j DROP", PROBES).split()
    assert (answered, probed) == ("False", "False") and float(took) >= 0.5


def test_no_route_is_a_miss_at_once():
    answered, probed, took = in_netns(":", PROBES).split()  # loopback down: no route at all
    assert (answered, probed) == ("False", "False") and float(took) < 0.5


def test_replies_are_matched_to_their_echo():
    from mesh.probe import ECHO_REPLY, checksum, echo_packet, is_reply
    packet = echo_packet(0x1234, 7, b"payload!")
    assert checksum(packet) == 0  # a packet with its checksum sums to zero
    ip_header = bytes([0x45]) + bytes(19)
    reply = bytes([ECHO_REPLY]) + packet[1:]
    assert is_reply(ip_header + reply, 0x1234, 7, b"payload!")
    assert not is_reply(ip_header + packet, 0x1234, 7, b"payload!")  # our own request
    assert not is_reply(ip_header + reply, 0x1234, 8, b"payload!")  # another echo's reply
    assert not is_reply(ip_header + reply, 0x1234, 7, b"other!!!")
    assert not is_reply(b"\x45", 0x1234, 7, b"")


def test_without_raw_sockets_a_connect_accepted_or_refused_answers(monkeypatch):
    import socket

    from vcapp.node import peerwatch_loop

    def not_allowed(ip, timeout):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(peerwatch_loop, "echo", not_allowed)
    monkeypatch.setattr(peerwatch_loop, "_echo_allowed", True)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        assert peerwatch_loop.probe("127.0.0.1", listening.getsockname()[1], timeout=0.5)
    assert peerwatch_loop._echo_allowed is False  # asked once, not on every probe
    assert peerwatch_loop.probe("127.0.0.1", 9, timeout=0.5)  # refused: the machine is up
