"""Runs on a simulated machine: one S3 operation with the minio client, result as JSON.

    python s3probe.py ENDPOINT ACCESS SECRET BUCKET put|get|list|anon-get KEY [DATA]

Prints {"ok": true, "data": ...} or {"ok": false, "code": "<S3 error code>"}.
"""

import io
import json
import sys
from urllib.parse import urlparse

from minio import Minio
from minio.error import S3Error


def main(endpoint: str, access: str, secret: str, bucket: str, op: str, key: str, data: str = "") -> dict:
    url = urlparse(endpoint)
    if op == "anon-get":
        client = Minio(url.netloc, secure=False)
    else:
        client = Minio(url.netloc, access_key=access, secret_key=secret, secure=False)
    try:
        if op == "put":
            raw = data.encode()
            client.put_object(bucket, key, io.BytesIO(raw), len(raw))
            return {"ok": True}
        if op in ("get", "anon-get"):
            resp = client.get_object(bucket, key)
            try:
                return {"ok": True, "data": resp.read().decode()}
            finally:
                resp.close()
                resp.release_conn()
        if op == "list":
            return {"ok": True, "data": sorted(o.object_name for o in client.list_objects(bucket))}
        raise SystemExit(f"unknown op {op}")
    except S3Error as e:
        return {"ok": False, "code": e.code}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
