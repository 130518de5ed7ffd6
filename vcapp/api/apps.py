"""Apps: create, list, scale, restart, destroy, instances (`ps`), logs and secrets.

Logs come from podman on the machine that runs the instance: when that is another machine,
the request is forwarded to its API (its node record has `api_url`) with the caller's own
Authorization header, and the answer streamed back line by line. Secret values go in and
never come out: the secrets routes answer names only.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator

import requests
from flask import Blueprint, Response, jsonify, request, stream_with_context

from vcapp import apps, keys
from vcapp import destroy as app_destroy
from vcapp import secrets as app_secrets
from vcapp.api import context
from vcapp.api.body import json_body
from vcapp.api.validate import bounded_int
from vcapp.errors import BadRequest, NotFound, Unavailable

bp = Blueprint("apps", __name__)

# Forwarded log requests: connecting to a machine on the cluster LAN/mesh takes milliseconds;
# a followed stream may stay idle for long, so there is no read timeout on it.
FORWARD_CONNECT_TIMEOUT_S = 5.0
FORWARD_READ_TIMEOUT_S = 30.0
MAX_TAIL = 10_000


@bp.post("/v1/apps")
def create():
    """Create an app. Body: {name, image?, port?, command?, count?, cpus?, memory?, env?, health?,
    priority?, constraints?}. Without an image it waits for its first git push."""
    body = json_body()
    from vcapp.node.config import data_dir

    spec = apps.create_app(context.store(), body.get("name"), body, repo_root=data_dir() / "git")
    return jsonify(app=spec), 201


@bp.get("/v1/apps")
def list_all():
    """Every app with its spec (secret names only) and how many instances run healthy."""
    store = context.store()
    healthy = _healthy_counts(store)
    found = [dict(a, healthy=healthy.get(a["name"], 0)) for a in apps.list_apps(store)]
    return jsonify(apps=found)


def _healthy_counts(store) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in store.list(keys.STATUS):
        if (e.value or {}).get("health") == "healthy":
            counts[e.value.get("app")] = counts.get(e.value.get("app"), 0) + 1
    return counts


@bp.get("/v1/apps/<name>")
def show(name: str):
    """One app's spec and its instances."""
    store = context.store()
    return jsonify(app=apps.get_app(store, name), instances=apps.instances(store, name))


@bp.delete("/v1/apps/<name>")
def destroy(name: str):
    """Destroy an app: its instances stop on every machine; its secrets, access tokens, custom
    domains, release records, repository and release images are deleted. Its volumes and
    bucket go too, only with ?confirm=NAME (or body {"confirm": NAME}); without it 409 names
    them and changes nothing (vcapp/destroy.py)."""
    from vcapp.node.config import NodeConfig, data_dir

    confirm = request.args.get("confirm")
    if confirm is None:
        confirm = json_body(required=False).get("confirm")
    if confirm is not None and not isinstance(confirm, str):
        raise BadRequest('confirm: give the app\'s name, e.g. {"confirm": "' + name + '"}')
    return jsonify(app_destroy.destroy(context.store(), NodeConfig.load(), apps.app_name(name), confirm,
                                       repo_root=data_dir() / "git"))


@bp.post("/v1/apps/<name>/scale")
def scale(name: str):
    """Body: {count?, memory?, cpus?, processes?: {"web": 2, "worker": 1}}. New limits roll the
    instances (no downtime)."""
    body = json_body()
    spec = apps.scale(context.store(), name, body.get("count"), body.get("memory"), body.get("cpus"),
                      body.get("processes"))
    return jsonify(app=spec)


@bp.post("/v1/apps/<name>/restart")
def restart(name: str):
    """Roll every instance of the app: each new one is healthy before its old one stops."""
    return jsonify(app=apps.restart(context.store(), name))


@bp.get("/v1/apps/<name>/ps")
def ps(name: str):
    """Instances: node, release, state, health, restarts, host port, and why (pending reasons)."""
    return jsonify(instances=apps.instances(context.store(), name))


# ---- secrets -------------------------------------------------------------------------------

@bp.put("/v1/apps/<name>/secrets")
def set_secrets(name: str):
    """Body: {"secrets": {NAME: value}}. Answers the names only; the app's instances roll."""
    body = json_body()
    names = app_secrets.set_secrets(context.store(), apps.app_name(name), body.get("secrets"))
    return jsonify(app=name, secrets=names)


@bp.get("/v1/apps/<name>/secrets")
def list_secrets(name: str):
    """The names of the app's secrets (values are never answered)."""
    return jsonify(app=name, secrets=app_secrets.names(context.store(), apps.app_name(name)))


@bp.delete("/v1/apps/<name>/secrets")
def unset_secrets(name: str):
    """Body: {"names": [NAME, ...]}."""
    body = json_body()
    names = body.get("names")
    if not isinstance(names, list) or not names:
        raise BadRequest('names: give the list of secret names to remove, e.g. {"names": ["DATABASE_URL"]}')
    left = app_secrets.unset_secrets(context.store(), apps.app_name(name), [str(n) for n in names])
    return jsonify(app=name, secrets=left)


# ---- logs ----------------------------------------------------------------------------------

@bp.get("/v1/apps/<name>/logs")
def logs(name: str):
    """Text lines of the app's output. ?instance=N (default: every instance, each line
    prefixed "N| "), ?follow=1 keeps streaming (every instance at once, lines as they come),
    ?tail=N starts with the last N lines of each."""
    store = context.store()
    apps.get_app(store, name)
    follow = request.args.get("follow") in ("1", "true", "yes")
    tail = bounded_int(request.args.get("tail"), "tail", 0, 0, MAX_TAIL) or None
    assigned = {e.value["instance"]: e.value for e in store.list(keys.assign(name))}
    chosen = request.args.get("instance")
    if chosen is not None and chosen not in assigned:
        raise NotFound(f"app {name} has no instance {chosen!r} running; `vcapp ps {name}` lists them")
    wanted = [chosen] if chosen is not None else sorted(assigned, key=lambda i: (len(i), i))
    if not wanted:
        raise NotFound(f"app {name} has no instance on any machine yet; `vcapp ps {name}` says why")
    prefix = len(wanted) > 1
    nodes = {n: store.value(keys.node(n)) or {} for n in {assigned[i]["node"] for i in wanted}}
    me = context.config().node
    sources = [_lines(name, i, assigned[i]["node"], nodes[assigned[i]["node"]], me, follow, tail) for i in wanted]
    if follow and prefix:
        lines = _merged(list(zip(wanted, sources)))
    else:
        lines = ((i, line) for i, src in zip(wanted, sources) for line in src)
    body = (f"{i}| {line}\n" if prefix else f"{line}\n" for i, line in lines)
    return Response(stream_with_context(body), mimetype="text/plain")


def _merged(sources: list[tuple[str, Iterator[str]]]) -> Iterator[tuple[str, str]]:
    """(instance, line) from every source as the lines come, each source read on a thread of its
    own; ends when every source has ended (a followed container that stops or moves). When the
    reader goes away, each thread stops at its source's next line and closes it."""
    lines: queue.Queue = queue.Queue(maxsize=1000)
    done, gone = object(), threading.Event()

    def offer(item) -> bool:
        """Queue `item` unless the reader went away (False)."""
        while not gone.is_set():
            try:
                lines.put(item, timeout=1.0)
                return True
            except queue.Full:
                continue
        return False

    def pump(inst: str, src: Iterator[str]) -> None:
        try:
            for line in src:
                if not offer((inst, line)):
                    break
        except Exception as e:  # one machine gone must not end the others' lines
            offer((inst, f"(vcapp: the log of {inst} ended: {e})"))
        finally:
            close = getattr(src, "close", None)
            if close:
                close()
            offer(done)

    for inst, src in sources:
        threading.Thread(target=pump, args=(inst, src), name=f"logs-{inst}", daemon=True).start()
    left = len(sources)
    try:
        while left:
            item = lines.get()
            if item is done:
                left -= 1
            else:
                yield item
    finally:
        gone.set()


def _lines(app: str, inst: str, node: str, record: dict, me: str, follow: bool, tail: int | None) -> Iterator[str]:
    if node == me or request.args.get("local") == "1":
        return _local_lines(app, inst, follow, tail)
    if not record.get("api_url"):
        raise Unavailable(f"machine {node} has no API address on record; is it still in the cluster?")
    return _forwarded_lines(record["api_url"], node, app, inst, follow, tail)


def _local_lines(app: str, inst: str, follow: bool, tail: int | None) -> Iterator[str]:
    from runtime.supervisor import Agent
    from runtime.podman import PodmanDriver, PodmanError

    try:
        return Agent(PodmanDriver.from_env(), context.config().node).logs(app, inst, follow=follow, tail=tail)
    except PodmanError as e:
        raise NotFound(str(e)) from None


def _forwarded_lines(api_url: str, node: str, app: str, inst: str, follow: bool,
                     tail: int | None) -> Iterator[str]:
    params = {"instance": inst, "local": "1", "follow": "1" if follow else "0"}
    if tail:
        params["tail"] = str(tail)
    try:
        resp = requests.get(f"{api_url.rstrip('/')}/v1/apps/{app}/logs", params=params, stream=True,
                            headers={"Authorization": request.headers.get("Authorization", "")},
                            timeout=(FORWARD_CONNECT_TIMEOUT_S, None if follow else FORWARD_READ_TIMEOUT_S))
    except requests.RequestException as e:
        raise Unavailable(f"cannot reach machine {node} for the logs of {app}/{inst} ({type(e).__name__}); "
                          f"`vcapp nodes` shows whether it is up") from None
    if not resp.ok:
        try:
            message = resp.json().get("error", resp.reason)
        except ValueError:
            message = resp.reason
        resp.close()
        raise Unavailable(f"machine {node} could not give the logs of {app}/{inst}: {message}")
    return _stream(resp)


def _stream(resp: requests.Response) -> Iterator[str]:
    try:
        for line in resp.iter_lines(decode_unicode=True):
            yield line
    finally:
        resp.close()
