"""The CLI's API client asks a GET again when a proxy between (the edge, a node router)
answers 502/503/504 while a machine comes or goes, or closes the connection without an answer
as it reloads; the API's own errors and writes are never repeated (vcapp/cli/client.py)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vcapp.cli import client as c

DROP = (None, "")  # close the connection without an answer, as a reloading Caddy may


class Script:
    """A server answering each request with the next (status, body) of a list."""

    def __init__(self, answers: list[tuple]):
        self.answers, self.seen = list(answers), []
        script = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                script.seen.append(self.command)
                status, body, *headers = script.answers.pop(0)
                if status is None:
                    self.close_connection = True
                    return
                data = body.encode()
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = answer

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.client = c.Client(c.Login(f"http://127.0.0.1:{self.httpd.server_address[1]}", "vcadm_x_y"))

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(c, "GATEWAY_RETRY_S", 0.01)


def test_a_get_through_a_proxy_that_answers_502_is_asked_again():
    s = Script([(502, ""), (503, "<html>no upstream</html>"), (200, json.dumps({"nodes": []}))])
    try:
        assert s.client.get("/v1/nodes") == {"nodes": []} and s.seen == ["GET"] * 3
    finally:
        s.close()


def test_the_apis_503_with_retry_after_is_asked_again_for_a_read():
    down = json.dumps({"error": "the cluster state store (etcd) is not answering"})
    s = Script([(503, down, ("Retry-After", "1")), (200, json.dumps({"nodes": [1]}))])
    try:
        assert s.client.get("/v1/nodes") == {"nodes": [1]} and s.seen == ["GET", "GET"]
    finally:
        s.close()


def test_the_apis_own_error_and_a_write_are_not_repeated():
    s = Script([(503, json.dumps({"error": "etcd is not answering"})), (502, ""), (200, "{}")])
    try:
        with pytest.raises(c.ClientError, match="etcd is not answering"):
            s.client.get("/v1/nodes")
        with pytest.raises(c.ClientError, match="HTTP 502 without a vcapp answer"):
            s.client.post("/v1/apps", {"name": "x"})
        assert s.seen == ["GET", "POST"]
    finally:
        s.close()


def test_a_proxy_that_keeps_failing_gives_up_after_the_retries():
    s = Script([(502, "")] * (c.GATEWAY_RETRIES + 1))
    try:
        with pytest.raises(c.ClientError, match="HTTP 502"):
            s.client.get("/v1/nodes")
        assert len(s.seen) == c.GATEWAY_RETRIES + 1
    finally:
        s.close()


def test_a_machine_removal_whose_answer_a_proxy_lost_is_sent_again_and_its_404_means_done(monkeypatch):
    from click.testing import CliRunner

    from vcapp.cli.node import node
    gone = json.dumps({"error": "no machine named 'home-2'; `vcapp nodes` lists them"})
    s = Script([(502, ""), (404, gone)])  # the first DELETE removed it; the edge lost the answer
    try:
        monkeypatch.setattr(c.Client, "from_config", classmethod(lambda cls: s.client))
        out = CliRunner().invoke(node, ["remove", "home-2", "--yes"])
        assert out.exit_code == 0, out.output
        assert "machine home-2 removed" in out.output and s.seen == ["DELETE", "DELETE"]
    finally:
        s.close()
    s = Script([(404, gone)])  # asked once and not found: the machine never was
    try:
        monkeypatch.setattr(c.Client, "from_config", classmethod(lambda cls: s.client))
        out = CliRunner().invoke(node, ["remove", "home-2", "--yes"])
        assert out.exit_code != 0 and "no machine named 'home-2'" in out.output
    finally:
        s.close()


def test_a_get_whose_connection_closed_without_an_answer_is_sent_again():
    s = Script([DROP, (200, json.dumps({"apps": []}))])
    try:
        assert s.client.get("/v1/apps") == {"apps": []} and s.seen == ["GET", "GET"]
        assert s.client.resent
    finally:
        s.close()


def test_a_write_whose_connection_closed_without_an_answer_is_not_sent_again():
    s = Script([DROP, (200, "{}")])
    try:
        with pytest.raises(c.ClientError, match="cannot reach"):
            s.client.post("/v1/apps", {"name": "x"})
        assert s.seen == ["POST"]
    finally:
        s.close()


def test_a_get_is_sent_twice_at_most_on_closed_connections():
    s = Script([DROP, DROP, (200, "{}")])
    try:
        with pytest.raises(c.ClientError, match="cannot reach"):
            s.client.get("/v1/apps")
        assert s.seen == ["GET", "GET"]
    finally:
        s.close()
