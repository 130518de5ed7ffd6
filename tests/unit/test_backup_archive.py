"""Reading a backup file back (vcapp/deploy/restore.py open_backup), with real age: only the
members a backup has are taken, by exact name, whatever paths a crafted archive names; a
wrong key, a file that is no backup, or a damaged state is refused with what to do."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from vcapp.deploy.backup import FORMAT
from vcapp.deploy.restore import open_backup
from vcapp.errors import BadRequest
from vcapp.state import keys


def key_pair(where: Path, name: str) -> tuple[Path, str]:
    path = where / f"{name}.txt"
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    public = next(line.split(":", 1)[1].strip() for line in path.read_text().splitlines() if "public key" in line)
    return path, public


def sealed(where: Path, recipient: str, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    out = where / "backup.tar.age"
    subprocess.run(["age", "-r", recipient, "-o", str(out)], input=buf.getvalue(), check=True)
    return out


MANIFEST = json.dumps({"format": FORMAT, "cluster": "acme", "apps": [], "volumes": []}).encode()
STATE = json.dumps({keys.CLUSTER: [{"key": keys.CLUSTER, "value": {"name": "acme", "domain": "apps.test"}}]}).encode()


def test_only_a_backups_own_members_are_taken(tmp_path):
    identity, public = key_pair(tmp_path, "admin")
    file = sealed(tmp_path, public, {"./manifest.json": MANIFEST, "./state.json": STATE,
                                     "./images/shop.tar": b"image", "../escape.txt": b"x", "/etc/evil": b"x",
                                     "volumes/shop/../../x.tar": b"x", "notes.txt": b"x"},
                  links={"images/blog.tar": "/etc/shadow"})
    work = tmp_path / "work"
    work.mkdir()
    got = open_backup(file, identity, work)
    assert got.cluster == {"name": "acme", "domain": "apps.test"}
    found = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file())
    assert found == ["images/shop.tar", "manifest.json", "state.json"], found
    assert not (tmp_path / "escape.txt").exists() and not (work / "images" / "blog.tar").exists()


def test_a_wrong_key_or_no_backup_or_a_damaged_one_is_refused_with_what_to_do(tmp_path):
    identity, public = key_pair(tmp_path, "admin")
    stranger, _ = key_pair(tmp_path, "stranger")
    file = sealed(tmp_path, public, {"manifest.json": MANIFEST, "state.json": STATE})
    cases = [(file, stranger, "could not be decrypted with"), (file, tmp_path / "nokey.txt", "no such key file"),
             (tmp_path / "none.age", identity, "no such backup file")]
    for path, key, says in cases:
        with pytest.raises(BadRequest) as e:
            open_backup(path, key, tmp_path)
        assert says in e.value.message, e.value.message
    plain = tmp_path / "plain.age"
    subprocess.run(["age", "-r", public, "-o", str(plain)], input=b"not a tar file at all" * 100, check=True)
    for members, says in [({"manifest.json": MANIFEST}, "incomplete or damaged"),
                          ({"manifest.json": json.dumps({"format": 99}).encode(), "state.json": STATE}, "format is 99"),
                          ({"manifest.json": MANIFEST, "state.json": b'{"x": 1}'}, "damaged")]:
        with pytest.raises(BadRequest) as e:
            work = tmp_path / f"w{len(says)}"
            work.mkdir()
            open_backup(sealed(tmp_path, public, members), identity, work)
        assert says in e.value.message, e.value.message
    with pytest.raises(BadRequest) as e:
        open_backup(plain, identity, tmp_path / "w")
    assert "is not a vcapp backup" in e.value.message
