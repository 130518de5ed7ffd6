"""The CLI's side of the admin API: where you logged in, and JSON requests to it.

    ~/.config/vcapp/config.json   {"url": ..., "token": ..., "git_urls": [...]}   (dir 0700, file 0600)

git_urls: other URLs whose git endpoint takes the same token (the edge's https://api.DOMAIN
when the login URL is a machine), for `vcapp git-credential`. $VCAPP_URL and $VCAPP_TOKEN
override the file (for scripts and CI); git_urls then apply only if $VCAPP_URL is the saved URL. Every failure becomes a
ClientError whose message is the API's own, or says why the API could not be reached.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import urllib3

# An admin request touches etcd a few times: seconds mean the API or its etcd is stuck.
REQUEST_TIMEOUT = 15.0
# A GET that a proxy answers 502/503/504 (a machine joining or leaving, the edge reloading), or
# the API 503 with Retry-After (etcd electing a leader, a member just removed), is asked again
# this many times, this far apart; a write is never repeated.
GATEWAY_RETRIES, GATEWAY_RETRY_S = 3, 1.0
CONFIG_NAME = "config.json"


class ClientError(Exception):
    """A request that did not succeed; `message` is what to show the person."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Login:
    url: str
    token: str
    git_urls: tuple[str, ...] = ()


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vcapp"


def config_path() -> Path:
    return config_dir() / CONFIG_NAME


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ClientError(f"{url!r} is not an API URL; give one like https://api.apps.example.com")
    return url


def load_login() -> Login | None:
    """The saved login, with $VCAPP_URL / $VCAPP_TOKEN taking precedence."""
    saved: dict = {}
    path = config_path()
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except ValueError:
            raise ClientError(f"{path} is damaged; log in again with `vcapp login URL`") from None
    url = os.environ.get("VCAPP_URL") or saved.get("url")
    token = os.environ.get("VCAPP_TOKEN") or saved.get("token")
    if not (url and token):
        return None
    url = normalize_url(url)
    same = saved.get("url") and normalize_url(saved["url"]) == url
    git_urls = tuple(u for u in saved.get("git_urls") or () if isinstance(u, str)) if same else ()
    return Login(url, token, git_urls)


def save_login(login: Login) -> Path:
    """Write the login where only this user can read it (0700 dir, 0600 file), atomically."""
    directory = config_dir()
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / CONFIG_NAME
    tmp = directory / (CONFIG_NAME + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        saved = {"url": login.url, "token": login.token}
        if login.git_urls:
            saved["git_urls"] = list(login.git_urls)
        json.dump(saved, f, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


class Client:
    """JSON over HTTP to one admin API, authenticated with an admin token."""

    def __init__(self, login: Login, timeout: float = REQUEST_TIMEOUT):
        self.login = login
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {login.token}"
        self.resent = False  # the last request was sent again (see request)

    @classmethod
    def from_config(cls) -> Client:
        login = load_login()
        if login is None:
            raise ClientError("not logged in: run `vcapp login URL` (it asks for the token), "
                              "or set VCAPP_URL and VCAPP_TOKEN")
        return cls(login)

    def get(self, path: str, **params: Any) -> dict:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict) -> dict:
        return self.request("POST", path, body=body)

    def delete(self, path: str) -> dict:
        return self.request("DELETE", path)

    def request(self, method: str, path: str, body: dict | None = None, params: dict | None = None,
                timeout: float | None = None, idempotent: bool = False) -> dict:
        """`idempotent`: a write whose repetition changes nothing more (the DELETE of one
        thing), sent again like a GET after a proxy's 502/503/504 or a connection closed
        without an answer; `self.resent` then says so, and a 404 may mean the first attempt
        did it."""
        again = method == "GET" or idempotent
        self.resent = False
        response = self._send(method, path, body, params, timeout, again)
        for _ in range(GATEWAY_RETRIES if again else 0):
            if not _gateway_error(response):
                break
            response.close()
            time.sleep(GATEWAY_RETRY_S)
            response = self._send(method, path, body, params, timeout, again)
            self.resent = True
        return _decode(response, self.login.url)

    def _send(self, method: str, path: str, body: dict | None, params: dict | None,
              timeout: float | None, again: bool = False) -> requests.Response:
        """One request; `again`: a connection closed before any answer (an edge or router
        reloading its config closes some as they carry a request) is tried once more."""
        tries = 2 if again else 1
        while True:
            tries -= 1
            try:
                return self.session.request(method, self.login.url + path, json=body, params=params,
                                            timeout=timeout or self.timeout)
            except requests.Timeout:
                raise ClientError(f"{self.login.url} did not answer within {timeout or self.timeout:.0f}s "
                                  "(is the cluster's etcd up? `vcapp status` from a cluster machine)") from None
            except requests.RequestException as e:
                if tries and _dropped(e):
                    self.resent = True
                    continue
                raise ClientError(f"cannot reach {self.login.url}: {_reason(e)} "
                                  "(is the cluster up? `vcapp login URL`)") from None

    def stream(self, method: str, path: str, body: dict | None = None, params: dict | None = None,
               connect_timeout: float = REQUEST_TIMEOUT, read_timeout: float | None = None) -> requests.Response:
        """A response whose lines the caller reads as they come (logs, a one-off command);
        ClientError when the API cannot be reached or refuses. Close it when done."""
        try:
            response = self.session.request(method, self.login.url + path, json=body, params=params, stream=True,
                                            timeout=(connect_timeout, read_timeout))
        except requests.RequestException as e:
            raise ClientError(f"cannot reach {self.login.url}: {_reason(e)}") from None
        if not response.ok:
            with response:
                _decode(response, self.login.url)
        return response


def _gateway_error(response: requests.Response) -> bool:
    """A proxy's 502/503/504 (the edge or a node router: it answers otherwise than the API's
    JSON while a machine comes or goes), or the API's own 503 with Retry-After (its etcd
    between two states)."""
    if response.status_code not in (502, 503, 504):
        return False
    if response.status_code == 503 and "Retry-After" in response.headers:
        return True
    try:
        return not isinstance(response.json(), dict)
    except ValueError:
        return True


def _dropped(error: requests.RequestException) -> bool:
    """The connection was closed or reset after the request went out and before any answer
    (urllib3's ProtocolError): not a refused connect, a timeout or a TLS failure."""
    return isinstance(error, requests.ConnectionError) and bool(error.args) and \
        isinstance(error.args[0], urllib3.exceptions.ProtocolError)


def _reason(error: requests.RequestException) -> str:
    text = str(error)
    for marker in ("Connection refused", "Name or service not known", "No route to host",
                   "timed out", "Temporary failure in name resolution", "certificate verify failed"):
        if marker in text:
            return marker.lower()
    return type(error).__name__


def _decode(response: requests.Response, base: str) -> dict:
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.ok and isinstance(data, dict):
        return data
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        raise ClientError(data["error"], response.status_code)
    raise ClientError(f"{base} answered HTTP {response.status_code} without a vcapp answer; "
                      "is this the URL of a vcapp API?", response.status_code)
