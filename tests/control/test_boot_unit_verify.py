"""The node daemon's and the edge's systemd units as this machine's systemd-analyze reads them: no error and no
warning (a misspelt setting, a command that does not exist). The simulated machines boot its
ExecStart (vcapp/dev/platform.py), which every cluster test then runs."""

from __future__ import annotations

import subprocess

from vcapp.edge import setup as edge_setup
from vcapp.node import service


def test_the_node_unit_passes_systemd_analyze_verify(tmp_path):
    unit = tmp_path / service.UNIT_NAME
    unit.write_text(service.unit_text(service.exec_start(), {"VCAPP_DATA_DIR": str(tmp_path / "data")}))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    edge = tmp_path / "edge"
    edge.mkdir()
    units = edge_setup.units(tmp_path / "data", edge_setup.DEFAULT_LISTEN, edge_setup.RoutesOptions("apps.example.com"))
    for name, text in units.items():
        (edge / name).write_text(text)
    proc = subprocess.run(["systemd-analyze", "verify", *(str(edge / n) for n in units)], capture_output=True,
                          text=True, timeout=60, cwd=edge)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    broken = tmp_path / "broken" / service.UNIT_NAME
    broken.parent.mkdir()
    broken.write_text(service.unit_text([str(tmp_path / "no-such-python"), "-m", "vcapp", "node", "run"], {}))
    proc = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "no-such-python" in proc.stderr  # the check can fail
