"""A steady request loop run on the client host: one GET every INTERVAL seconds through the
edge, each on a fresh connection, logging "<seconds since start> <status or error>" per line.

    python loadclient.py URL EDGE_ADDR CA_FILE DURATION INTERVAL
"""

import http.client
import socket
import ssl
import sys
import time
from urllib.parse import urlsplit

# A request that takes longer than this counts as failed (the user gave up).
REQUEST_TIMEOUT = 5.0


def one(url, edge: str, ctx: ssl.SSLContext) -> str:
    conn = http.client.HTTPSConnection(edge, 443, timeout=REQUEST_TIMEOUT, context=ctx)
    conn._tunnel_host = None
    try:
        sock = socket.create_connection((edge, 443), timeout=REQUEST_TIMEOUT)
        conn.sock = ctx.wrap_socket(sock, server_hostname=url.hostname)
        conn.request("GET", url.path or "/", headers={"Host": url.hostname})
        resp = conn.getresponse()
        resp.read()
        return str(resp.status)
    except Exception as e:
        return type(e).__name__
    finally:
        conn.close()


def main() -> None:
    url, edge, ca, duration, interval = urlsplit(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
    ctx = ssl.create_default_context(cafile=ca)
    start = time.monotonic()
    print("ready", flush=True)
    n = 0
    while time.monotonic() - start < duration:
        sent = time.monotonic() - start
        print(f"{sent:.3f} {one(url, edge, ctx)}", flush=True)
        n += 1
        time.sleep(max(0.0, start + n * interval - time.monotonic()))


if __name__ == "__main__":
    main()
