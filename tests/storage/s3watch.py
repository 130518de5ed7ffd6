"""Runs on a simulated machine: an S3 put, list and get of BUCKET every INTERVAL_S for SECONDS,
each in its own thread (a stalled one does not hold back the next), with the minio client.

    python s3watch.py ENDPOINT ACCESS SECRET BUCKET NAME SECONDS

Prints one JSON line per operation when it ends: {"op", "at" (epoch s it started), "took",
"err" ("" when it succeeded)}. Keys go under NAME/; `get` reads NAME/fixed, written first
(tried again until FIRST_PUT_WITHIN_S); SECONDS count from then.
"""

import io
import json
import sys
import threading
import time

import urllib3
from minio import Minio

INTERVAL_S = 0.5
# An operation that is not answered in this long is reported as an error, not waited for;
# longer than any stall the test tolerates, so a stall shows as a late answer.
READ_TIMEOUT_S = 60
CONNECT_TIMEOUT_S = 5
# A new bucket's first write waits for its first volumes, made on every machine that holds a
# copy; one slow to answer the master fails the write after the filer's 30 s of retries.
FIRST_PUT_WITHIN_S = 95


def main(endpoint: str, access: str, secret: str, bucket: str, name: str, seconds: str) -> None:
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
                               retries=False, maxsize=500)
    s3 = Minio(endpoint, access_key=access, secret_key=secret, secure=False, http_client=http, region="us-east-1")
    first_put_by = time.time() + FIRST_PUT_WITHIN_S
    while True:
        try:
            s3.put_object(bucket, f"{name}/fixed", io.BytesIO(b"fixed"), 5)
            break
        except Exception:
            if time.time() > first_put_by:
                raise
            time.sleep(1)
    out = threading.Lock()

    def one(op: str, i: int) -> None:
        started = time.time()
        try:
            if op == "put":
                s3.put_object(bucket, f"{name}/k{i}", io.BytesIO(b"x" * 100), 100)
            elif op == "list":
                list(s3.list_objects(bucket, prefix=f"{name}/"))
            else:
                resp = s3.get_object(bucket, f"{name}/fixed")
                try:
                    resp.read()
                finally:
                    resp.close()
                    resp.release_conn()
            err = ""
        except Exception as e:  # an S3 error or a timeout: both are an answer to report
            err = f"{type(e).__name__}: {str(e)[:120]}"
        with out:
            print(json.dumps({"op": op, "at": round(started, 2), "took": round(time.time() - started, 2),
                              "err": err}), flush=True)

    threads = []
    end = time.time() + float(seconds)
    i = 0
    while time.time() < end:
        i += 1
        for op in ("put", "list", "get"):
            t = threading.Thread(target=one, args=(op, i), daemon=True)
            t.start()
            threads.append(t)
        time.sleep(INTERVAL_S)
    for t in threads:
        t.join(READ_TIMEOUT_S + CONNECT_TIMEOUT_S + 5)


if __name__ == "__main__":
    main(*sys.argv[1:])
