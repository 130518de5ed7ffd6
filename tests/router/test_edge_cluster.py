"""Through the edge, as a user on the client host sees it: TLS, routing, tokens, failover."""

from __future__ import annotations

import json

import pytest

from tests.router.conftest import DOMAIN

pytestmark = pytest.mark.cluster

BLOG = f"blog.{DOMAIN}"


def test_public_app_answers_over_https_with_its_page(stack):
    out = stack.curl(BLOG, "/", "-w", "\n%{http_code} %{http_version}")
    body, _, status = out.stdout.rpartition("\n")
    assert status == "200 2", out.stderr
    assert "Hello from blog" in body
