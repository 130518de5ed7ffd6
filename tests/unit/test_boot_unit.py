"""The node daemon's systemd unit (vcapp/node/service.py): what it says, and that the command
the simulator boots is read back from it (pure)."""

from __future__ import annotations

import sys

import pytest

from vcapp.node import service

pytestmark = pytest.mark.unit


def test_the_unit_restarts_the_daemon_after_the_network_and_leaves_containers_on_a_restart():
    text = service.unit_text(["/opt/vcapp/bin/python", "-m", "vcapp", "node", "run"], {})
    lines = set(text.splitlines())
    for wanted in ("After=network-online.target", "Wants=network-online.target", "Restart=always",
                   "KillMode=process", "Delegate=yes", "LimitNOFILE=1048576", "WantedBy=multi-user.target",
                   "ExecStart=/opt/vcapp/bin/python -m vcapp node run"):
        assert wanted in lines, wanted
    assert not any(line.startswith("Environment=") for line in lines)


def test_the_exec_line_round_trips_paths_systemd_would_expand():
    argv = ["/srv/my venv/bin/python", "-m", "vcapp", "node", "run", "--x", "100%", "$HOME"]
    text = service.unit_text(argv, {"VCAPP_DATA_DIR": "/data/50% full $x"})
    assert "ExecStart='/srv/my venv/bin/python' -m vcapp node run --x 100%% '$$HOME'" in text
    assert "Environment='VCAPP_DATA_DIR=/data/50%% full $$x'" in text
    assert service.exec_start_of(text) == argv
    with pytest.raises(ValueError, match="no ExecStart"):
        service.exec_start_of("[Service]\nType=simple\n")


def test_a_simulated_machine_boots_the_units_command_and_never_the_hosts_systemd(monkeypatch):
    monkeypatch.delenv("VCAPP_DATA_DIR", raising=False)
    monkeypatch.delenv("VCAPP_RUN_DIR", raising=False)
    assert service.boot_argv() == [sys.executable, "-m", "vcapp", "node", "run"]
    monkeypatch.setenv("VCAPP_DEV_CLUSTER", "dev")
    assert service.systemd_runs_this_machine() is False


def test_the_edge_gets_its_hub_then_its_https_entry_with_secrets_read_from_files(tmp_path):
    from vcapp.edge import setup as edge_setup

    data = tmp_path / "data"
    hub_only = edge_setup.units(data, "0.0.0.0:8443", None)
    assert list(hub_only) == [edge_setup.MESH_UNIT]
    both = edge_setup.units(data, "0.0.0.0:8443", edge_setup.RoutesOptions("apps.example.com", acme_email="a@b.c"))
    hub, entry = (service.exec_start_of(both[u]) for u in (edge_setup.MESH_UNIT, edge_setup.ROUTES_UNIT))
    assert hub[-4:] == ["--listen", "0.0.0.0:8443", "--mesh-key-file", str(data / "credentials" / "mesh.key")]
    assert entry[entry.index("--token-file") + 1] == str(data / "credentials" / "edge.token")
    assert entry[entry.index("--domain") + 1] == "apps.example.com" and "--acme-email" in entry
    assert "After=network-online.target vcapp-mesh-edge.service" in both[edge_setup.ROUTES_UNIT]
    assert "KillMode=control-group" in both[edge_setup.ROUTES_UNIT] and "KillMode=process" in both[edge_setup.MESH_UNIT]
    assert "Delegate=yes" not in both[edge_setup.MESH_UNIT]

    edge_setup.save_secret(data / "credentials" / "mesh.key", "ab" * 32 + "\n")
    assert oct((data / "credentials").stat().st_mode & 0o777) == "0o700"
    assert oct((data / "credentials" / "mesh.key").stat().st_mode & 0o777) == "0o600"
    assert (data / "credentials" / "mesh.key").read_text() == "ab" * 32 + "\n"
