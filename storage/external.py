"""Per-app buckets on an S3 service the cluster does not run (AWS S3, MinIO, another SeaweedFS).

The cluster holds one admin key of that service and, for each app, makes:

    bucket    <prefix><app> (default prefix "vcapp-"), with the admin key
    policy    s3:* on arn:aws:s3:::<bucket> and arn:aws:s3:::<bucket>/*, nothing else
    app key   kind "iam":   IAM user <bucket>, the policy inline as "vcapp-bucket"
                            (PutUserPolicy), one access key (CreateAccessKey). AWS, and
                            SeaweedFS's embedded IAM on its S3 port.
              kind "minio": MinIO user whose access key is <bucket>, the policy as canned
                            policy <bucket>, attached to that user (MinIO's admin API).

Everything is idempotent: a bucket, user or policy that exists is kept, and the app's key is
kept when the service still knows it. `delete_bucket` and `delete_app_key` undo both when the
app is destroyed (each idempotent too: what is gone already is skipped). The app gets AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_ENDPOINT_URL_S3 (the service's URL, the same on every machine) and BUCKET_NAME.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlparse

import urllib3
from minio import Minio, MinioAdmin
from minio.credentials import StaticProvider
from minio.error import InvalidResponseError, MinioAdminException, MinioException, S3Error

from storage.host import StorageError

KINDS = ("iam", "minio")
DEFAULT_PREFIX = "vcapp-"
POLICY_NAME = "vcapp-bucket"  # the inline policy's name on an IAM user
DEFAULT_REGION = "us-east-1"  # what S3 services assume when none is given
PREFIX = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")  # S3's rule, without dots (virtual-host safe)
REGION = re.compile(r"^[a-z0-9-]{1,32}$")
SECRET_KEY_BYTES = 30  # 40 base64 characters, as AWS secret keys
# An S3 service on a LAN answers in milliseconds; a few seconds means it is not there. Bucket
# and user calls are small, so 20 s of reading covers a slow service under load.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 20.0
REFUSED_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidClientTokenId",
                 "XMinioInvalidAccessKey", "XMinioAccessKeyDisabled", "XMinioAdminNotAllowed"}


class BadSetting(ValueError):
    """The setting itself is malformed (nothing was contacted)."""


class Unreachable(StorageError):
    """The service did not answer, or did not answer like an S3 service."""


class KeyRefused(StorageError):
    """The service answered and refused the admin key (or its rights)."""


@dataclass(frozen=True)
class Service:
    endpoint: str         # scheme://host[:port], no path
    kind: str             # "iam" or "minio"
    access_key: str
    secret_key: str
    region: str = ""
    iam_endpoint: str = ""  # kind iam: where the IAM API is (default: the S3 endpoint, as SeaweedFS)

    @property
    def secure(self) -> bool:
        return self.endpoint.startswith("https://")

    @property
    def netloc(self) -> str:
        return urlparse(self.endpoint).netloc


# ---- pure parts ------------------------------------------------------------------------------

def check_endpoint(url: object, what: str = "endpoint") -> str:
    """scheme://host[:port] from a URL a person gave, or BadSetting saying what is wrong."""
    text = str(url or "").strip()
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise BadSetting(f"{what}: {text!r} is not a URL; give one like https://s3.example.com or "
                         "http://10.0.0.5:9000")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment or parsed.username or parsed.password:
        raise BadSetting(f"{what}: {text!r} has a path, query or user part; give only scheme://host[:port]")
    try:
        parsed.port
    except ValueError:
        raise BadSetting(f"{what}: {text!r} has a port that is not a number in 1-65535") from None
    return f"{parsed.scheme}://{parsed.netloc.lower()}"


def check_kind(kind: object) -> str:
    text = str(kind or "").strip().lower()
    if text not in KINDS:
        raise BadSetting(f"kind: {kind!r} is not known; use iam (AWS, SeaweedFS) or minio (MinIO's admin API)")
    return text


def check_prefix(prefix: object) -> str:
    text = DEFAULT_PREFIX if prefix is None else str(prefix).strip()
    if text and not PREFIX.match(text):
        raise BadSetting(f"bucket prefix {prefix!r} is not valid: up to 32 lower-case letters, digits and '-', "
                         "starting with a letter or digit")
    return text


def check_region(region: object) -> str:
    text = str(region or "").strip()
    if text and not REGION.match(text):
        raise BadSetting(f"region {region!r} is not valid: lower-case letters, digits and '-', like eu-west-1")
    return text


def bucket_name(prefix: str, app: str) -> str:
    name = f"{prefix}{app}"
    if not BUCKET.match(name):
        raise BadSetting(f"bucket name {name!r} is not a valid S3 bucket name (3-63 lower-case letters, digits, '-')")
    return name


def bucket_policy(bucket: str) -> dict:
    """The one policy an app's key gets: everything on its bucket and its objects, nothing else."""
    return {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["s3:*"],
                           "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}


def attached_policies(user_info: str) -> list[str]:
    """The policies MinIO's user-info answer lists for a user ("policyName": "a,b")."""
    names = (json.loads(user_info or "{}").get("policyName") or "")
    return [n for n in names.split(",") if n]


# ---- talking to the service ------------------------------------------------------------------

def _http() -> urllib3.PoolManager:
    return urllib3.PoolManager(timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
                               retries=urllib3.Retry(total=1, backoff_factor=0.2))


def s3_client(svc: Service, access_key: str | None = None, secret_key: str | None = None) -> Minio:
    """A minio client of the service with the admin key (or another key)."""
    return Minio(svc.netloc, access_key=access_key or svc.access_key, secret_key=secret_key or svc.secret_key,
                 secure=svc.secure, region=svc.region or None, http_client=_http())


def _failure(svc: Service, e: Exception, what: str = "S3 service") -> StorageError:
    """The error a person can act on for a failed call to the service."""
    where = svc.endpoint
    if isinstance(e, S3Error):
        if e.code in REFUSED_CODES:
            return KeyRefused(f"the {what} at {where} refused the key: {e.code} ({e.message})")
        return StorageError(f"the {what} at {where} answered {e.code}: {e.message}")
    if isinstance(e, MinioAdminException):
        code = _admin_code(e)
        if code in REFUSED_CODES or str(e._code) in ("401", "403"):
            return KeyRefused(f"the MinIO admin API at {where} refused the key: {code or e._code}")
        return StorageError(f"the MinIO admin API at {where} answered {e._code}: {code or e._body[:200]}")
    if isinstance(e, (InvalidResponseError, MinioException)):
        return Unreachable(f"{where} does not answer like an S3 service ({type(e).__name__}); check the URL")
    return Unreachable(f"cannot reach the {what} at {where}: {_reason(e)}")


def _admin_code(e: MinioAdminException) -> str:
    try:
        return json.loads(e._body).get("Code", "")
    except (ValueError, AttributeError):
        return ""


def _reason(e: Exception) -> str:
    reason = getattr(e, "reason", None) or e
    return f"{type(reason).__name__}: {reason}"[:300]


NETWORK_ERRORS = (urllib3.exceptions.HTTPError, OSError, ValueError, MinioException)


def check_service(svc: Service) -> None:
    """Prove the admin key works before the cluster relies on it: list the buckets, and list
    the users through the kind's user API. Raises Unreachable or KeyRefused."""
    try:
        s3_client(svc).list_buckets()
    except (S3Error, *NETWORK_ERRORS) as e:
        raise _failure(svc, e) from None
    if svc.kind == "iam":
        _iam_call(svc, "list_users", MaxItems=1)
    else:
        _minio_call(svc, "user_list")


def ensure_bucket(svc: Service, bucket: str) -> None:
    client = s3_client(svc)
    try:
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket, location=svc.region or None)
    except S3Error as e:
        if e.code == "BucketAlreadyExists":
            raise StorageError(f"bucket {bucket} belongs to someone else on {svc.endpoint}; "
                               "set the backend again with another --bucket-prefix") from None
        if e.code != "BucketAlreadyOwnedByYou":
            raise _failure(svc, e) from None
    except NETWORK_ERRORS as e:
        raise _failure(svc, e) from None


def ensure_app_key(svc: Service, bucket: str, current: dict | None) -> dict:
    """The key pair that opens only `bucket` ({"access_key", "secret_key"}): `current` when the
    service still knows it, else a new one (any other key of the bucket's user is removed)."""
    if svc.kind == "iam":
        return _iam_app_key(svc, bucket, current)
    return _minio_app_key(svc, bucket, current)


def _iam_client(svc: Service):
    import boto3
    from botocore.config import Config

    return boto3.client("iam", endpoint_url=svc.iam_endpoint or svc.endpoint, region_name=svc.region or DEFAULT_REGION,
                        aws_access_key_id=svc.access_key, aws_secret_access_key=svc.secret_key,
                        config=Config(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                                      retries={"max_attempts": 2}))


def _iam_call(svc: Service, method: str, client=None, ignore: tuple[str, ...] = (), **kwargs) -> dict:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return getattr(client or _iam_client(svc), method)(**kwargs)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ignore:
            return {}
        message = e.response.get("Error", {}).get("Message", "")
        where = svc.iam_endpoint or svc.endpoint
        if code in REFUSED_CODES:
            raise KeyRefused(f"the IAM API at {where} refused the key: {code} ({message})") from None
        raise StorageError(f"the IAM API at {where} answered {method}: {code} ({message})") from None
    except (BotoCoreError, *NETWORK_ERRORS) as e:
        raise Unreachable(f"cannot reach the IAM API at {svc.iam_endpoint or svc.endpoint}: {_reason(e)}") from None


def _iam_app_key(svc: Service, bucket: str, current: dict | None) -> dict:
    iam = _iam_client(svc)
    _iam_call(svc, "create_user", iam, ignore=("EntityAlreadyExists",), UserName=bucket)
    _iam_call(svc, "put_user_policy", iam, UserName=bucket, PolicyName=POLICY_NAME,
              PolicyDocument=json.dumps(bucket_policy(bucket)))
    known = [k["AccessKeyId"] for k in _iam_call(svc, "list_access_keys", iam, UserName=bucket).get(
        "AccessKeyMetadata", []) if k.get("UserName", bucket) == bucket]
    if current and current.get("access_key") in known:
        return current
    for key_id in known:  # keys whose secret nobody kept (an earlier attempt that failed midway)
        _iam_call(svc, "delete_access_key", iam, ignore=("NoSuchEntity",), UserName=bucket, AccessKeyId=key_id)
    made = _iam_call(svc, "create_access_key", iam, UserName=bucket)["AccessKey"]
    return {"access_key": made["AccessKeyId"], "secret_key": made["SecretAccessKey"]}


def _minio_call(svc: Service, method: str, *args, **kwargs) -> str:
    admin = MinioAdmin(endpoint=svc.netloc, credentials=StaticProvider(svc.access_key, svc.secret_key),
                       region=svc.region, secure=svc.secure, http_client=_http())
    try:
        return getattr(admin, method)(*args, **kwargs)
    except (MinioAdminException, *NETWORK_ERRORS) as e:
        raise _failure(svc, e, "MinIO admin API") from None


def _minio_app_key(svc: Service, bucket: str, current: dict | None) -> dict:
    """MinIO users are access keys: the user is <bucket>, so a retry converges on the same one."""
    secret = (current or {}).get("secret_key") if (current or {}).get("access_key") == bucket else None
    keys = {"access_key": bucket, "secret_key": secret or secrets.token_urlsafe(SECRET_KEY_BYTES)}
    _minio_call(svc, "policy_add", bucket, policy=bucket_policy(bucket))
    _minio_call(svc, "user_add", keys["access_key"], keys["secret_key"])
    if bucket not in attached_policies(_minio_call(svc, "user_info", keys["access_key"])):
        _minio_call(svc, "attach_policy", [bucket], user=keys["access_key"])
    return keys


# ---- deleting (the app is destroyed) ---------------------------------------------------------

def delete_bucket(svc: Service, bucket: str) -> int:
    """Delete every object of `bucket`, then the bucket, with the admin key; the number of
    objects deleted. A bucket that is not there any more is fine."""
    from minio.deleteobjects import DeleteObject

    client = s3_client(svc)
    try:
        if not client.bucket_exists(bucket):
            return 0
        names = [o.object_name for o in client.list_objects(bucket, recursive=True)]
        failed = list(client.remove_objects(bucket, (DeleteObject(n) for n in names)))
        if failed:
            raise StorageError(f"{svc.endpoint} kept {len(failed)} object(s) of bucket {bucket}: "
                               f"{failed[0].code} ({failed[0].message})")
        client.remove_bucket(bucket)
        return len(names)
    except S3Error as e:
        if e.code == "NoSuchBucket":
            return 0
        raise _failure(svc, e) from None
    except NETWORK_ERRORS as e:
        raise _failure(svc, e) from None


def delete_app_key(svc: Service, bucket: str) -> None:
    """Remove the app's key, user and policy (`ensure_app_key` made them): the key stops working."""
    if svc.kind == "iam":
        iam = _iam_client(svc)
        gone = ("NoSuchEntity",)
        for key in _iam_call(svc, "list_access_keys", iam, ignore=gone, UserName=bucket).get("AccessKeyMetadata", []):
            _iam_call(svc, "delete_access_key", iam, ignore=gone, UserName=bucket, AccessKeyId=key["AccessKeyId"])
        _iam_call(svc, "delete_user_policy", iam, ignore=gone, UserName=bucket, PolicyName=POLICY_NAME)
        _iam_call(svc, "delete_user", iam, ignore=gone, UserName=bucket)
        return
    for method in ("user_remove", "policy_remove"):
        try:
            _minio_call(svc, method, bucket)
        except KeyRefused:
            raise
        except StorageError as e:
            if "NoSuch" not in str(e) and "not found" not in str(e).lower():
                raise


# ---- files kept in a bucket (vcapp's scheduled backups) ----------------------------------------

def check_bucket(name: object) -> str:
    text = str(name or "").strip()
    if not BUCKET.match(text):
        raise BadSetting(f"bucket {name!r} is not a valid S3 bucket name (3-63 lower-case letters, digits, '-')")
    return text


def list_files(svc: Service, bucket: str, prefix: str) -> dict[str, int]:
    """The objects under `prefix` in `bucket`: name after the prefix -> size."""
    try:
        return {o.object_name[len(prefix):]: o.size or 0
                for o in s3_client(svc).list_objects(bucket, prefix=prefix, recursive=True)}
    except (S3Error, *NETWORK_ERRORS) as e:
        raise _failure(svc, e) from None


def put_file(svc: Service, bucket: str, key: str, path: str) -> None:
    """Upload a local file (multipart for a large one: minio's fput_object)."""
    try:
        s3_client(svc).fput_object(bucket, key, path)
    except (S3Error, *NETWORK_ERRORS) as e:
        raise _failure(svc, e) from None


def delete_file(svc: Service, bucket: str, key: str) -> None:
    try:
        s3_client(svc).remove_object(bucket, key)
    except (S3Error, *NETWORK_ERRORS) as e:
        raise _failure(svc, e) from None
