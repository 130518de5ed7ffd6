"""Deleting an app's images from a cluster registry (builder/registry.py `delete_repository`,
what `vcapp apps destroy` does on every machine): a real distribution registry with the
machines' basic auth on loopback, images uploaded through its v2 API (two tagged releases
sharing a layer, one untagged manifest known only by its release digest)."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request

import pytest

from builder import registry as reg
from tests.builder.conftest import free_port

CREDENTIAL = reg.Credential("vcapp-machine", "p" * 64)
REPO = "apps/shop"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def registry(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    htpasswd = reg.write_htpasswd(tmp_path / "htpasswd", CREDENTIAL)
    process = reg.start(address, reg.FilesystemStorage(tmp_path / "data"), tmp_path / "config.yml",
                        log=tmp_path / "registry.log", htpasswd=htpasswd)
    yield address
    reg.stop(process)


def send(address: str, method: str, path: str, body: bytes = b"", content_type: str | None = None):
    req = urllib.request.Request(f"http://{address}{path}", data=body if method in ("PUT", "POST") else None,
                                 method=method, headers={"Authorization": f"Basic {reg._basic(CREDENTIAL)}",
                                                         **({"Content-Type": content_type} if content_type else {})})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.headers


def blob(address: str, data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _, headers = send(address, "POST", f"/v2/{REPO}/blobs/uploads/")
    location = headers["Location"].split(address, 1)[-1]
    status, _ = send(address, "PUT", f"{location}{'&' if '?' in location else '?'}digest={digest}", data,
                     "application/octet-stream")
    assert status == 201
    return {"mediaType": "application/octet-stream", "digest": digest, "size": len(data)}


def image(address: str, tag: str, layers: list[bytes]) -> str:
    """Upload an OCI image (a config and `layers`) as REPO:tag; its manifest digest."""
    config = blob(address, json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode())
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": dict(config, mediaType="application/vnd.oci.image.config.v1+json"),
                           "layers": [dict(blob(address, layer), mediaType="application/vnd.oci.image.layer.v1.tar")
                                      for layer in layers]}).encode()
    status, headers = send(address, "PUT", f"/v2/{REPO}/manifests/{tag}", manifest, OCI_MANIFEST)
    assert status == 201
    return headers["Docker-Content-Digest"]


def test_every_manifest_of_the_app_and_its_layer_links_are_deleted(registry):
    first = image(registry, "1", [b"shared layer", b"release 1"])
    second = image(registry, "2", [b"shared layer", b"release 2"])
    untagged = image(registry, "3", [b"release 3"])
    latest = image(registry, "3", [b"release 3 again"])  # the tag moved on: `untagged` is known by digest only
    layer = "sha256:" + hashlib.sha256(b"shared layer").hexdigest()
    assert reg.manifest_status(registry, CREDENTIAL, REPO, first) == 200
    assert sorted(reg.repository_digests(registry, CREDENTIAL, REPO)) == sorted([first, second, latest])

    deleted = reg.delete_repository(registry, CREDENTIAL, REPO, [untagged, first, "sha256:" + "0" * 64])
    assert sorted(deleted) == sorted([first, second, untagged, latest])
    for digest in (first, second, untagged, latest):
        assert reg.manifest_status(registry, CREDENTIAL, REPO, digest) == 404
    assert reg.manifest_status(registry, CREDENTIAL, REPO, "1") == 404  # the tags went with them
    assert reg.repository_digests(registry, CREDENTIAL, REPO) == []
    with pytest.raises(urllib.error.HTTPError) as gone:
        send(registry, "HEAD", f"/v2/{REPO}/blobs/{layer}")
    assert gone.value.code == 404
    assert reg.delete_repository(registry, CREDENTIAL, REPO, [first]) == []  # again: nothing left, no error


def test_a_registry_that_does_not_answer_is_an_error_that_names_it():
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(reg.RegistryError, match=address):
        reg.delete_repository(address, CREDENTIAL, REPO)
