"""A stack that cannot be made says why and what to run, in seconds: the Debian mirror is
asked (through the build proxy) before debootstrap starts. Loopback only: the "proxy" is a
port nobody listens on."""

from __future__ import annotations

import socket
import time

import pytest

from buildpacks.stacks import MIRROR, STACKS
from builder import stacks
from builder.errors import StackError


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_mirror_names_mirror_proxy_and_what_to_run(tmp_path):
    proxy = f"http://127.0.0.1:{closed_port()}"
    lines: list[str] = []
    start = time.monotonic()
    with pytest.raises(StackError) as err:
        stacks.ensure_archive(STACKS["node"], lines.append, tmp_path / "stacks", {"HTTP_PROXY": proxy})
    assert time.monotonic() - start < 10
    message = err.value.reason
    assert message.startswith(f"cannot make stack node (bookworm): the Debian mirror {MIRROR} does not answer "
                              f"from this machine through the build proxy {proxy} (URLError: ")
    assert "`vcapp settings set build.proxy http://HOST:PORT`" in message
    assert "`python -m builder.stacks node`" in message
    assert f"copy {stacks.archive_path(STACKS['node'], tmp_path / 'stacks').name} into {tmp_path / 'stacks'}" in message
    assert lines == []  # nothing started: no debootstrap
    assert not list((tmp_path / "stacks").glob("*.oci.tar"))


def test_the_trixie_stack_is_named_by_its_key_and_the_proxy_login_is_not_shown(tmp_path):
    port = closed_port()
    with pytest.raises(StackError) as err:
        stacks.check_mirror(STACKS["go-trixie"], {"HTTP_PROXY": f"http://builds:s3cret@127.0.0.1:{port}"}, tmp_path)
    assert "`python -m builder.stacks go-trixie`" in err.value.reason
    assert "cannot make stack go (trixie)" in err.value.reason
    assert f"through the build proxy http://***@127.0.0.1:{port} " in err.value.reason
    assert "s3cret" not in str(err.value)
