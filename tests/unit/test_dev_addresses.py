"""The simulator's clean-up of podman's host-wide address allocations (vcapp/dev/cluster.py
forget_stale_addresses): removed only when no simulated cluster and no container of the host's
own podman is left to hold an address."""

from __future__ import annotations

import subprocess
from types import SimpleNamespace

import pytest

from vcapp.dev import cluster

pytestmark = pytest.mark.unit


@pytest.fixture
def allocations(tmp_path, monkeypatch):
    db = tmp_path / "ipam.db"
    db.write_bytes(b"allocations of machines powered off long ago")
    monkeypatch.setattr(cluster, "list_clusters", lambda: [])
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: SimpleNamespace(returncode=0, stdout=""))
    return db


def test_allocations_nobody_holds_are_forgotten(allocations):
    assert cluster.forget_stale_addresses(allocations) is True
    assert not allocations.exists()
    assert cluster.forget_stale_addresses(allocations) is False  # nothing left to do


def test_a_running_cluster_keeps_them(allocations, monkeypatch):
    monkeypatch.setattr(cluster, "list_clusters", lambda: ["dev"])
    assert cluster.forget_stale_addresses(allocations) is False and allocations.exists()


@pytest.mark.parametrize("podman", [SimpleNamespace(returncode=0, stdout="3f2a1b\n"),
                                    SimpleNamespace(returncode=125, stdout="")],
                         ids=["host-container", "podman-failed"])
def test_a_container_of_the_host_or_an_unknown_answer_keeps_them(allocations, monkeypatch, podman):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: podman)
    assert cluster.forget_stale_addresses(allocations) is False and allocations.exists()
