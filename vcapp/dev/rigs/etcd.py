"""A real etcd alone on 127.0.0.1, with ports of its own: the API tests' store, the defrag
tests' member, bench/etcd_memory.py's two members."""

from __future__ import annotations

import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from vcapp.node.etcd import ETCD_BIN
from vcapp.state.store import Store, wait_healthy

START_TIMEOUT = 20  # a fresh single member elects itself in about a second


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def lone_etcd(data: Path, *flags: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """etcd with its data and log in `data` (and any extra `flags`): its URL and process once it
    answers. Killed on leaving."""
    client, peer = free_port(), free_port()
    url = f"http://127.0.0.1:{client}"
    with open(data / "etcd.log", "w") as log:
        proc = subprocess.Popen(
            [ETCD_BIN, "--name", "t", "--data-dir", str(data / "data"),
             "--listen-client-urls", url, "--advertise-client-urls", url,
             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", f"t=http://127.0.0.1:{peer}", *flags],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(Store([url]), START_TIMEOUT)
        yield url, proc
    finally:
        proc.kill()
        proc.wait(10)
