"""The sample app `vcapp dev up` deploys: a stdlib web server on $PORT (no dependencies)."""

import os
import socket
from http.server import BaseHTTPRequestHandler, HTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = (f"<!doctype html><title>hello</title><h1>Hello from vcapp</h1>"
                f"<p>served by instance {socket.gethostname()}</p>\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Hello).serve_forever()
