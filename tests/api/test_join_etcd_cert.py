"""A join's etcd certificate: the machine's CSR is signed by the cluster CA for the address the
cluster gave it, a join without a valid CSR is refused before anything is written, and
removing the machine puts its certificate on the revocation list."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.api.conftest import CLUSTER_KEY, JOIN_KEY, MACHINE_ETCD_KEY, bearer, client_post, sealed_join
from tests.api.test_join_and_tokens import machine
from vcapp import etcdtls, joinbox
from vcapp.state import keys

pytestmark = pytest.mark.cluster


def _public(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_a_join_answers_the_machines_certificate_signed_by_the_cluster_ca(api, cluster):
    answer = sealed_join(client_post(api), cluster.join, machine("office-1", n=7))
    assert answer.status_code == 201, answer.json
    tls = answer.json["etcd_tls"]
    ca = x509.load_pem_x509_certificate(tls["ca"].encode())
    cert = x509.load_pem_x509_certificate(tls["cert"].encode())
    assert tls["ca"] == cluster.store.value(keys.ETCD_CA)["cert"]
    assert _public(ca.public_key()) == _public(etcdtls.ca_key(CLUSTER_KEY).public_key())
    cert.verify_directly_issued_by(ca)
    assert _public(cert.public_key()) == _public(MACHINE_ETCD_KEY.public_key())  # its own key, kept at home
    assert cert.subject.rfc4514_string() == "OU=office-1,O=vcapp"  # no CN: etcd's gateway refuses one with auth on
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.IPAddress)) == {ipaddress.ip_address("10.0.1.7"),
                                                             ipaddress.ip_address("127.0.0.1")}
    assert cluster.store.value(keys.etcd_cert("office-1"))["serial"] == format(cert.serial_number, "x")


@pytest.mark.parametrize("csr, why", [
    (None, "csr: give the certificate signing request"),
    ("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "csr: not a PEM"),
])
def test_a_join_without_a_valid_csr_is_refused_and_leaves_no_trace(api, cluster, csr, why):
    revision = cluster.store.revision()
    request = {"token": cluster.join, "node": machine("office-1")}
    if csr is not None:
        request["csr"] = csr
    response = api.post("/v1/join", json=joinbox.seal_request(JOIN_KEY, request).body)
    assert response.status_code == 400 and why in response.json["error"], response.json
    assert cluster.store.revision() == revision


def test_removing_a_machine_revokes_its_certificate(api, cluster):
    answer = sealed_join(client_post(api), cluster.join, machine("office-1", n=7))
    serial = etcdtls.serial(answer.json["etcd_tls"]["cert"].encode())
    assert api.delete("/v1/nodes/office-1", headers=bearer(cluster.admin)).status_code == 200
    revoked = cluster.store.value(keys.etcd_revoked(serial))
    assert revoked["name"] == "office-1" and revoked["addr"] == "10.0.1.7"
    assert cluster.store.get(keys.etcd_cert("office-1")) is None
    crl = x509.load_pem_x509_crl(etcdtls.make_crl(answer.json["etcd_tls"]["ca"].encode(), CLUSTER_KEY, [serial]))
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
