"""A tiny web app standing in for a deployed container in router tests and benchmarks.

    python webapp.py PORT NAME     serves:
      /            an HTML page naming the app and the machine (big, for screenshots)
      /health      "ok"
      /headers     the request headers it received, as JSON
      /bulk?mb=N   N MiB of zeros (throughput)
"""

import json
import socket
import socketserver
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CHUNK = b"\0" * 65536


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stall

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        name, host = self.server.app_name, socket.gethostname()
        if url.path == "/health":
            self._send(200, "text/plain", b"ok\n")
        elif url.path == "/headers":
            self._send(200, "application/json", json.dumps(dict(self.headers.items())).encode())
        elif url.path == "/bulk":
            mb = int(parse_qs(url.query).get("mb", ["1"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(mb * 16 * len(CHUNK)))
            self.end_headers()
            for _ in range(mb * 16):
                self.wfile.write(CHUNK)
        else:
            page = (f"<!doctype html><html><head><title>{name}</title></head>"
                    f"<body style='background:#1e6fd9;color:white;font:48px sans-serif;padding:40px'>"
                    f"<h1>Hello from {name}</h1><p>served by {host}</p></body></html>")
            self._send(200, "text/html; charset=utf-8", page.encode())


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for our FQDN: a 5 s timeout in a closed network.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "localhost", self.server_address[1]


def main() -> None:
    port, name = int(sys.argv[1]), sys.argv[2]
    server = Server(("0.0.0.0", port), Handler)
    server.app_name = name
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
