"""Pure parts of buckets on an external S3 service: what a setting may say, the one policy an
app's key gets, and which S3 endpoint an instance is given."""

from __future__ import annotations

import json

import pytest

from storage import external
from vcapp.errors import BadRequest
from vcapp.node.runtime_loop import with_s3_endpoint
from vcapp.state import bucketbackend

pytestmark = pytest.mark.unit

GOOD = {"endpoint": "https://S3.Example.com:9000/", "kind": "IAM", "access_key": "AK", "secret_key": "sk\n"}


@pytest.mark.parametrize("url, clean", [
    ("https://s3.example.com", "https://s3.example.com"),
    ("http://10.0.0.5:9000/", "http://10.0.0.5:9000"),
    (" HTTP://Minio.LAN:9000 ", "http://minio.lan:9000"),
])
def test_endpoints_are_reduced_to_scheme_host_and_port(url, clean):
    assert external.check_endpoint(url) == clean


@pytest.mark.parametrize("url, message", [
    ("s3.example.com", "is not a URL"),
    ("ftp://s3.example.com", "is not a URL"),
    ("https://", "is not a URL"),
    (None, "is not a URL"),
    ("https://s3.example.com/my-bucket", "has a path"),
    ("https://s3.example.com/?x=1", "has a path"),
    ("https://user:pw@s3.example.com", "has a path, query or user part"),
    ("http://10.0.0.5:99999", "port that is not a number"),
])
def test_malformed_endpoints_say_what_to_give(url, message):
    with pytest.raises(external.BadSetting, match=message):
        external.check_endpoint(url)


def test_kinds_prefixes_and_regions():
    assert external.check_kind(" MinIO ") == "minio" and external.check_kind("iam") == "iam"
    for bad in ("s3", "", None):
        with pytest.raises(external.BadSetting, match="use iam .* or minio"):
            external.check_kind(bad)
    assert external.check_prefix(None) == "vcapp-" and external.check_prefix("") == ""
    with pytest.raises(external.BadSetting, match="bucket prefix"):
        external.check_prefix("My_Prefix")
    with pytest.raises(external.BadSetting, match="region"):
        external.check_region("EU West")
    assert external.bucket_name("acme-", "notes") == "acme-notes"
    with pytest.raises(external.BadSetting, match="not a valid S3 bucket name"):
        external.bucket_name("", "ab")  # S3 wants at least 3 characters


def test_the_policy_opens_the_bucket_and_its_objects_and_nothing_else():
    policy = external.bucket_policy("vcapp-notes")
    assert policy == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:*"],
         "Resource": ["arn:aws:s3:::vcapp-notes", "arn:aws:s3:::vcapp-notes/*"]}]}
    json.dumps(policy)  # it travels as JSON to PutUserPolicy and MinIO's add-canned-policy


def test_minio_user_info_tells_whether_the_policy_is_attached():
    assert external.attached_policies('{"policyName": "readwrite,vcapp-notes", "status": "enabled"}') == [
        "readwrite", "vcapp-notes"]
    assert external.attached_policies('{"status": "enabled"}') == []


def test_a_setting_is_checked_field_by_field_before_anything_is_contacted():
    assert bucketbackend.check_body(GOOD) == {
        "endpoint": "https://s3.example.com:9000", "kind": "iam", "region": "", "bucket_prefix": "vcapp-",
        "iam_endpoint": "", "access_key": "AK", "secret_key": "sk"}
    for change, message in [({"kind": "gcs"}, "kind"), ({"endpoint": "s3"}, "endpoint"),
                            ({"secret_key": ""}, "secret key"), ({"access_key": None}, "access key"),
                            ({"kind": "minio", "iam_endpoint": "https://iam.amazonaws.com"}, "only kind iam")]:
        with pytest.raises(BadRequest, match=message):
            bucketbackend.check_body({**GOOD, **change})


def test_the_public_view_never_carries_the_secret():
    record = {"kind": "iam", "endpoint": "https://s3.example.com", "access_key": "AK", "secret": "gAAAA-token",
              "region": "", "bucket_prefix": "vcapp-", "iam_endpoint": "", "set_at": 1.0, "by": "initial"}
    shown = bucketbackend.public(record)
    assert shown["backend"] == "external" and "secret" not in shown and "gAAAA-token" not in json.dumps(shown)
    assert bucketbackend.public(None) == {"backend": "builtin"}
    assert bucketbackend.location(record) == ("https://s3.example.com", "vcapp-")
    assert bucketbackend.location(None) is None


def test_instances_use_the_external_service_or_their_own_gateway():
    base = {"app": "notes", "bucket": "vcapp-notes", "env": {"BUCKET_NAME": "vcapp-notes"}}
    external_env = with_s3_endpoint(dict(base, s3_endpoint="https://s3.example.com"), "10.0.0.7")["env"]
    assert external_env["AWS_ENDPOINT_URL_S3"] == "https://s3.example.com"
    assert with_s3_endpoint(base, "10.0.0.7")["env"]["AWS_ENDPOINT_URL_S3"] == "http://10.0.0.7:8333"
    assert "AWS_ENDPOINT_URL_S3" not in (with_s3_endpoint({"app": "web", "env": {}}, "10.0.0.7")["env"])
