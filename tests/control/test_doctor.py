"""`vcapp doctor` on this machine, really run: podman, the tools, the devices and the disk it
finds here; a machine without wireguard-go and one whose data disk is full fail with what to do.
The checks of a joined machine run on the simulated cluster (test_mesh_cluster.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

READY = ("kernel", "podman", "buildah", "runc", "etcd", "wireguard-go", "fusermount3", "iptables", "ip", "caddy",
         "weed", "tun", "fuse")


def doctor(data_dir: Path, *args: str, path: str | None = None) -> tuple[int, str]:
    env = dict(os.environ, VCAPP_DATA_DIR=str(data_dir), VCAPP_RUN_DIR=str(data_dir.parent / "run"))
    if path is not None:
        env["PATH"] = path
    proc = subprocess.run([sys.executable, "-m", "vcapp", "doctor", *args], env=env, capture_output=True, text=True,
                          timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


def checks(out: str) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(out)["checks"]}


def test_this_prepared_machine_passes_and_the_cluster_checks_wait_for_a_join(tmp_path):
    code, out = doctor(tmp_path / "data", "--json")
    found = checks(out)
    assert code == 0 and json.loads(out)["ok"] is True, out
    assert {n: found[n]["status"] for n in READY} == {n: "ok" for n in READY}
    assert found["disk"]["status"] in ("ok", "warn")  # a test machine may have under 10 GiB free
    assert "runc" in found["podman"]["detail"]
    assert [found[n]["status"] for n in ("daemon", "clock", "edge", "udp")] == ["skip"] * 4
    assert "--edge URL" in found["udp"]["detail"]


def test_a_machine_without_wireguard_go_is_told_which_package_to_install(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        for tool in Path(d).iterdir() if Path(d).is_dir() else ():
            if tool.name != "wireguard-go" and not (bin_dir / tool.name).exists():
                (bin_dir / tool.name).symlink_to(tool)
    code, out = doctor(tmp_path / "data", "--json", path=str(bin_dir))
    found = checks(out)
    assert code == 1 and found["wireguard-go"]["status"] == "fail", out
    assert found["wireguard-go"]["fix"] == "apt-get install -y wireguard-go"
    assert found["podman"]["status"] == "ok" and found["etcd"]["status"] == "ok"
    code, text = doctor(tmp_path / "data", path=str(bin_dir))
    assert code == 1 and "FAIL  wireguard-go" in text and "1 problem(s) to fix" in text


def test_a_full_data_disk_fails_before_a_build_would(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(small)], check=True)
    try:
        code, out = doctor(small / "data", "--json")
    finally:
        subprocess.run(["umount", str(small)], check=True)
    disk = checks(out)["disk"]
    assert code == 1 and disk["status"] == "fail", out
    assert f"GiB free at {small / 'data'}" in disk["detail"] and "podman system prune" in disk["fix"]
