"""The cluster registry as machines see it: images survive a registry restart, a push
to a registry that is down fails saying so, after the build itself succeeded, and a
registry started with the machines' credential answers nothing to anyone without it."""

from __future__ import annotations

import json
import secrets

import pytest

from builder import registry as reg
from builder.build import build
from builder.errors import PushError
from buildpacks.stacks import STACKS
from tests.builder.conftest import APP_PORT, REGISTRY_PORT, wait_http, write_tree

pytestmark = pytest.mark.cluster

PAGE_APP = f"""\
FROM {STACKS['static'].alias}
COPY page.txt /www/index.html
CMD ["/bin/sh", "-c", "exec httpd -f -p 0.0.0.0:$PORT -h /www"]
"""


def start_registry(sim, home2):
    address = f"{home2.addr}:{REGISTRY_PORT}"
    data = sim.dc.host_dir("home-2") / "data"

    def probe(addr: str) -> bool:
        return sim.run("home-2", "curl", "-sf", "--max-time", "2", f"http://{addr}/v2/", check=False).returncode == 0

    process = reg.start(address, reg.FilesystemStorage(data / "registry"), data / "registry.yml",
                        spawn=home2.spawn, log=sim.dc.host_dir("home-2") / "log" / "registry.log", probe=probe)
    return address, process


def test_images_survive_a_registry_restart(sim, home1, home2, tmp_path):
    address, process = start_registry(sim, home2)
    tree = write_tree(tmp_path / "page", {"Dockerfile": PAGE_APP, "page.txt": "kept across restarts\n"})
    result = build(tree, "page", 5, address, **home1.build_kwargs())
    reg.stop(process)
    assert sim.fetch(f"http://{address}/v2/", host="home-1").returncode != 0

    address, process = start_registry(sim, home2)
    try:
        home2.podman("pull", "--tls-verify=false", result.image)
        digest = home2.podman("image", "inspect", "--format", "{{.Digest}}", result.image).stdout.strip()
        assert digest == result.digest
        home2.serve(result.image, "page-5", port=APP_PORT + 20)
        assert wait_http(sim, "home-1", f"http://{home2.addr}:{APP_PORT + 20}/") == "kept across restarts\n"
    finally:
        reg.stop(process)


MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"


def test_registry_with_the_machine_credential_refuses_anonymous_pushes_deletes_and_pulls(sim, home1, home2,
                                                                                      tmp_path):
    """Started as the node daemon starts it (htpasswd with the one machine user), asked from
    another machine's namespace: without the credential a manifest push, a delete and a pull
    answer 401 and change nothing; with it (an auth file for podman/buildah, a netrc for
    curl: never the password in a command line) they work."""
    address = f"{home2.addr}:{REGISTRY_PORT + 2}"
    data = sim.dc.host_dir("home-2") / "data"
    credential = reg.Credential("vcapp-machine", secrets.token_hex(32))
    htpasswd = reg.write_htpasswd(data / "registry-auth" / "htpasswd", credential)
    authfile = reg.write_auth_file(tmp_path / "auth.json", [address], credential)
    assert authfile.stat().st_mode & 0o777 == 0o600 and htpasswd.stat().st_mode & 0o777 == 0o600
    assert credential.password not in htpasswd.read_text() and credential.password not in repr(credential)
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine {home2.addr} login {credential.user} password {credential.password}\n")
    netrc.chmod(0o600)

    def probe(addr: str) -> bool:  # up: /v2/ answers, with 401 to the anonymous
        code = sim.fetch(f"http://{addr}/v2/", "-o", "/dev/null", "-w", "%{http_code}", host="home-2").stdout
        return code == "401"

    process = reg.start(address, reg.FilesystemStorage(data / "registry-auth" / "data"),
                        data / "registry-auth" / "config.yml", spawn=home2.spawn, probe=probe, htpasswd=htpasswd,
                        log=sim.dc.host_dir("home-2") / "log" / "registry-auth.log")
    try:
        tree = write_tree(tmp_path / "locked", {"Dockerfile": PAGE_APP, "page.txt": "machines only\n"})
        with pytest.raises(PushError):  # a build without the credential cannot push
            build(tree, "locked", 1, address, **home1.build_kwargs())
        result = build(tree, "locked", 2, address, authfile=authfile, **home1.build_kwargs())
        assert result.digest and result.digest.startswith("sha256:")

        def ask(method: str, path: str, *args: str, auth: bool = False) -> tuple[str, str]:
            out = sim.fetch(f"http://{address}/v2/apps/locked/{path}", "-X", method, "-H", f"Accept: {MANIFEST_TYPES}",
                            "-w", "\n%{http_code}", *args, *(["--netrc-file", str(netrc)] if auth else []),
                            host="home-1").stdout
            body, _, code = out.rpartition("\n")
            return code, body

        code, manifest = ask("GET", f"manifests/{result.digest}", auth=True)
        assert code == "200", manifest
        (tmp_path / "manifest.json").write_text(manifest)
        media = json.loads(manifest).get("mediaType", "application/vnd.oci.image.manifest.v1+json")
        push = ("-H", f"Content-Type: {media}", "--data-binary", f"@{tmp_path / 'manifest.json'}")
        # the attack of issue 15: re-tag a release to another manifest, delete a release, read one
        assert ask("PUT", "manifests/2", *push)[0] == "401"
        assert ask("PUT", "manifests/evil", *push)[0] == "401"
        assert ask("DELETE", f"manifests/{result.digest}")[0] == "401"
        assert ask("GET", "manifests/2")[0] == "401"
        assert ask("GET", "manifests/evil", auth=True)[0] == "404"  # the refused push changed nothing
        assert ask("GET", "manifests/2", auth=True)[0] == "200"  # nor did the refused delete
        pulled = home2.podman("pull", "--tls-verify=false", result.image, check=False)
        assert pulled.returncode != 0 and "authentication required" in pulled.stderr, pulled.stderr
        # the machine credential may do all of it
        home2.podman(*reg.pull_command(result.image, authfile)[1:])
        digest = home2.podman("image", "inspect", "--format", "{{.Digest}}", result.image).stdout.strip()
        assert digest == result.digest
        assert ask("PUT", "manifests/copy", *push, auth=True)[0] == "201"
        assert ask("DELETE", f"manifests/{result.digest}", auth=True)[0] == "202"
        assert ask("GET", "manifests/2", auth=True)[0] == "404"
    finally:
        reg.stop(process)
        home2.podman("rmi", "-f", f"{address}/apps/locked:2", check=False)


def test_push_to_a_registry_that_is_down_says_so(home1, tmp_path):
    down = f"{home1.addr}:{REGISTRY_PORT + 99}"
    tree = write_tree(tmp_path / "nopush", {"Dockerfile": PAGE_APP, "page.txt": "x\n"})
    with pytest.raises(PushError) as err:
        build(tree, "nopush", 1, down, **home1.build_kwargs())
    assert f"is the cluster registry at {down} up?" in str(err.value)
    assert home1.podman("image", "exists", f"{down}/apps/nopush:1", check=False).returncode == 0
