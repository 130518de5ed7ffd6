"""Pure pieces of the deploy glue: the registries drop-in and release numbers from requests."""

import pytest

from vcapp.api.releases import release_number
from vcapp.errors import BadRequest
from vcapp.node.registry_loop import dropin_text

pytestmark = pytest.mark.unit


def test_dropin_lists_each_cluster_registry_once_as_insecure():
    text = dropin_text(["10.1.0.12:5000", "10.1.0.11:5000", "10.1.0.12:5000"])
    assert text.count("[[registry]]") == 2
    assert text.index('location = "10.1.0.11:5000"') < text.index('location = "10.1.0.12:5000"')
    assert text.count("insecure = true") == 2


@pytest.mark.parametrize("given, number", [(None, None), (3, 3), ("3", 3), ("v12", 12)])
def test_release_numbers(given, number):
    assert release_number(given) == number


@pytest.mark.parametrize("given", ["0", "latest", True, "-1", "v"])
def test_bad_release_numbers_say_what_to_give(given):
    with pytest.raises(BadRequest, match="give one like 3 or v3"):
        release_number(given)


def test_dropin_mirrors_other_machines_registries_with_this_one_first_and_only_live_ones():
    own, b, c, dead = "10.1.0.11:5000", "10.1.0.12:5000", "10.1.0.13:5000", "10.1.0.14:5000"
    text = dropin_text([own, b, c, dead], own, live=[own, b, c])
    entries = {e.split('"')[1]: e for e in text.split("[[registry]]")[1:]}
    assert set(entries) == {own, b, c, dead}
    assert "mirror" not in entries[own]  # this machine's own images: from its own registry
    mirrors = lambda addr: [part.split('"')[1] for part in entries[addr].split("[[registry.mirror]]")[1:]]  # noqa: E731
    assert mirrors(b) == [own, c]  # own first, then the other live ones, never b itself
    assert mirrors(dead) == [own, b, c]  # the dead machine's images come from the copies
    assert dead not in mirrors(c)
    assert text.count("insecure = true") == 4 + 2 + 2 + 3


def test_image_copies_go_to_live_machines_of_other_sites_first():
    from vcapp.deploy.pipeline import copy_targets
    nodes = {"home-1": {"site": "home", "addr": "a"}, "home-2": {"site": "home", "addr": "b"},
             "home-3": {"site": "home", "addr": "c"}, "office-1": {"site": "office", "addr": "d"},
             "office-2": {"site": "office", "addr": "e"}}
    alive = {"home-1", "home-2", "home-3", "office-1"}
    assert copy_targets(nodes, alive, "home-1") == ["office-1", "home-2"]  # office-2 is down
    assert copy_targets(nodes, {"home-1"}, "home-1") == []
    assert copy_targets(nodes, alive, "office-1") == ["home-1", "home-2"]


def _tarball(entries) -> bytes:
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, kind, target in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(target)
                tar.addfile(info, io.BytesIO(target))
            elif kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, target
                tar.addfile(info)
            else:
                info.type = tarfile.CHRTYPE
                tar.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize("entry, why", [
    (("../escape.py", "file", b"x"), "leaves the source directory"),
    (("/etc/cron.d/x", "file", b"x"), "leaves the source directory"),
    (("up", "link", "../../etc/passwd"), "points outside"),
    (("abs", "link", "/etc/passwd"), "points outside"),
    (("dev", "char", None), "neither a file"),
])
def test_a_build_source_that_would_write_outside_its_directory_is_refused_before_anything_is_written(
        tmp_path, entry, why):
    from vcapp.deploy.remote_build import unpack
    data = _tarball([("app.py", "file", b"print(1)\n"), entry])
    with pytest.raises(BadRequest, match=why):
        unpack(data, tmp_path / "src")
    assert not (tmp_path / "src").exists()


def test_a_build_source_round_trips_files_links_and_exec_bits(tmp_path):
    from vcapp.deploy.remote_build import pack, unpack
    src = tmp_path / "a"
    (src / "bin").mkdir(parents=True)
    (src / "app.py").write_text("print(1)\n")
    (src / "bin" / "run").write_text("#!/bin/sh\n")
    (src / "bin" / "run").chmod(0o755)
    (src / "main.py").symlink_to("app.py")
    out = unpack(pack(src), tmp_path / "b")
    assert (out / "app.py").read_text() == "print(1)\n" and (out / "main.py").readlink().name == "app.py"
    assert (out / "bin" / "run").stat().st_mode & 0o111


@pytest.mark.parametrize("rec, runs", [
    ({"image": "10.1.0.11:5000/apps/blog:3", "digest": "sha256:" + "a" * 64},
     "10.1.0.11:5000/apps/blog@sha256:" + "a" * 64),
    ({"image": "10.1.0.11:5000/apps/blog:3", "digest": None}, "10.1.0.11:5000/apps/blog:3"),  # made before digests
    ({"image": "10.1.0.11:5000/apps/blog:3"}, "10.1.0.11:5000/apps/blog:3"),
    ({"image": "blog:3", "digest": "sha256:" + "b" * 64}, "blog@sha256:" + "b" * 64),
])
def test_a_release_runs_its_image_by_digest_and_a_record_without_one_by_tag(rec, runs):
    from vcapp.state.releases import run_image
    assert run_image(rec) == runs


def test_the_auth_file_gives_the_machine_credential_for_every_registry_and_only_to_its_owner(tmp_path, monkeypatch):
    import base64
    import json
    import os

    from vcapp import machine
    from vcapp.node import registry_loop
    monkeypatch.setenv("VCAPP_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("VCAPP_DATA_DIR", str(tmp_path / "data"))
    machine.save_cluster_key(os.urandom(32))

    class Ctx:
        base = tmp_path / "data"
    loop = registry_loop.RegistryLoop(Ctx())
    loop._auth(["10.1.0.12:5000", "10.1.0.11:5000"])
    path = machine.registry_auth_file()
    assert path == tmp_path / "run" / "registry" / "auth.json" and path.stat().st_mode & 0o777 == 0o600
    auths = json.loads(path.read_text())["auths"]
    assert sorted(auths) == ["10.1.0.11:5000", "10.1.0.12:5000"]
    cred = machine.registry_credential()
    assert {base64.b64decode(a["auth"]).decode() for a in auths.values()} == {f"{cred.user}:{cred.password}"}
    # derived from the cluster key for the registry alone: not the machine API's bearer
    from vcapp.machine import machine_secret
    assert cred.password != machine_secret(machine.cluster_key()) and len(cred.password) == 64
