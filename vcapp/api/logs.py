"""An app's logs (`vcapp logs`): its instances' output and the routers' access lines.

Instance lines come from podman on the machine that runs the instance; access lines from each
live machine's node router (router/accesslog.py: method, path, status, time, client, the
instance it went to), since any router may take the app's requests. A source on another
machine is asked through that machine's API (its node record has `api_url`) with the
caller's own Authorization header and `local=1`, and its answer streamed back line by line.

With more than one source each line is prefixed: "0| ", "worker-1| ", "router@home-2| ".
Following, lines come as they are written, from every source at once.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from typing import Callable, Iterator

import requests
from flask import Blueprint, Response, request, stream_with_context

from router import accesslog
from router.node import access_log_path
from router.routes import app_host
from vcapp.api import context
from vcapp.api.validate import bounded_int
from vcapp.errors import BadRequest, NotFound, Unavailable
from vcapp.state import apps, instances, keys, reposync
from vcapp.views import ingress

bp = Blueprint("logs", __name__)

# Forwarded log requests: connecting to a machine on the cluster LAN/mesh takes milliseconds;
# a followed stream may stay idle for long, so there is no read timeout on it.
FORWARD_CONNECT_TIMEOUT_S = 5.0
FORWARD_READ_TIMEOUT_S = 30.0
MAX_TAIL = 10_000
SOURCES = ("all", "app", "router")
ROUTER = "router@"
# --since: a Go/podman duration ("90s", "15m", "1h30m", "2d") or unix seconds.
DURATION = re.compile(r"(?:(\d{1,6})d)?(?:(\d{1,6})h)?(?:(\d{1,6})m)?(?:(\d{1,6})s)?")
MAX_SINCE_S = 366 * 86400


def since_time(value: str | None, now: float) -> float | None:
    """Unix seconds from ?since= ("1h", "15m", "2d", "1h30m", or unix seconds); None when absent."""
    if value is None or value == "":
        return None
    text = value
    m = DURATION.fullmatch(text)
    if m and any(m.groups()):
        days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
        span = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
        if span <= MAX_SINCE_S:
            return now - span
    elif re.fullmatch(r"\d{9,10}(\.\d{1,6})?", text) and now - MAX_SINCE_S <= float(text) <= now + 60:
        return float(text)
    raise BadRequest(f"since: {value!r} is not a time; give a duration like 30s, 15m, 1h or 2d (a year at "
                     "most), or unix seconds")


@bp.get("/v1/apps/<name>/logs")
def logs(name: str):
    """Text lines of the app's output and its requests. ?instance=N (only that instance's
    output), ?source=all|app|router (default all), ?follow=1 keeps streaming (every source at
    once, lines as they come), ?tail=N starts with the last N lines of each source, ?since=1h
    (or unix seconds) leaves out older lines."""
    store = context.store()
    spec = apps.get_app(store, apps.app_name(name))
    follow = request.args.get("follow") in ("1", "true", "yes")
    tail = bounded_int(request.args.get("tail"), "tail", 0, 0, MAX_TAIL) or None
    since = since_time(request.args.get("since"), time.time())
    source = request.args.get("source") or "all"
    if source not in SOURCES:
        raise BadRequest(f"source: {source!r} is not one of {', '.join(SOURCES)}")
    chosen = request.args.get("instance")
    me = context.config().node
    auth = request.headers.get("Authorization", "")  # sources run on threads of their own: no request there
    if request.args.get("local") == "1" and request.args.get("router") == "1":
        hosts = _hosts(store, name, spec)
        return _text((f"{line}\n" for line in _local_router_lines(name, hosts, since, tail, follow)))
    if request.args.get("local") == "1" and request.args.get("kept") == "1":
        return _text((f"{line}\n" for line in _local_kept_lines(name, chosen, since, tail, me)))
    assigned = instances.assignments(store, name)
    if chosen is not None and chosen not in assigned:
        raise NotFound(f"app {name} has no instance {chosen!r} running; `vcapp ps {name}` lists them")
    wanted = [chosen] if chosen is not None else [] if source == "router" else \
        sorted(assigned, key=lambda i: (len(i), i))
    live = sorted(reposync.live_apis(store))
    routers = live if chosen is None and source != "app" else []
    if not wanted and not routers:
        raise NotFound(f"app {name} has no instance on any machine yet; `vcapp ps {name}` says why")
    nodes = {n: store.value(keys.node(n)) or {} for n in {assigned[i]["node"] for i in wanted} | set(live)}
    gone = threading.Event()
    # the output of containers that are gone first (each line prefixed already), then the live ones
    sources = [(None, _kept_lines(name, n, nodes[n], me, chosen, tail, since, auth))
               for n in live if source != "router"]
    sources += [(i, _lines(name, i, assigned[i]["node"], nodes[assigned[i]["node"]], me, follow, tail, since, auth))
                for i in wanted]
    if routers:
        hosts = _hosts(store, name, spec)
        sources += [(ROUTER + n, _router_lines(name, n, nodes[n], me, hosts, follow, tail, since, auth, gone.is_set))
                    for n in routers]
    prefix = len([i for i, _ in sources if i is not None]) > 1 or chosen is None
    if follow:
        lines = _merged(sources, gone)
    else:
        lines = ((i, line) for i, src in sources for line in src)
    return _text(f"{i}| {line}\n" if prefix and i is not None else f"{line}\n" for i, line in lines)


def _text(body: Iterator[str]) -> Response:
    return Response(stream_with_context(body), mimetype="text/plain")


def _hosts(store, name: str, spec: dict) -> set[str]:
    domain = (store.value(keys.CLUSTER) or {}).get("domain", "")
    return {app_host(name, domain), *ingress.valid_domains(name, spec)}


def _merged(sources: list[tuple[str, Iterator[str]]],
            gone: threading.Event | None = None) -> Iterator[tuple[str, str]]:
    """(source, line) from every source as the lines come, each source read on a thread of its
    own; ends when every source has ended (a followed container that stops or moves). When the
    reader goes away (`gone` is set), each thread stops at its source's next line and closes it."""
    lines: queue.Queue = queue.Queue(maxsize=1000)
    done, gone = object(), gone or threading.Event()

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
            offer((inst, f"(vcapp: the log of {inst or 'ended containers'} ended: {e})"))
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


def _lines(app: str, inst: str, node: str, record: dict, me: str, follow: bool, tail: int | None,
           since: float | None, auth: str) -> Iterator[str]:
    if node == me or request.args.get("local") == "1":
        return _local_lines(app, inst, follow, tail, since)
    return _forwarded(record, node, app, {"instance": inst}, follow, tail, since, f"{app}/{inst}", auth)


def _local_lines(app: str, inst: str, follow: bool, tail: int | None, since: float | None) -> Iterator[str]:
    from runtime.podman import PodmanDriver, PodmanError
    from runtime.supervisor import Agent

    try:
        return Agent(PodmanDriver.from_env(), context.config().node).logs(app, inst, follow=follow, tail=tail,
                                                                           since=since)
    except PodmanError as e:
        raise NotFound(str(e)) from None


def _machine_lines(node: str, me: str, local: Callable[[], Iterator[str]], forward: Callable[[], Iterator[str]],
                   what: str) -> Iterator[str]:
    """A source every live machine gives (kept output, access lines): `local()` here, else
    `forward()`. A machine that cannot give it is one line saying so, not the end of the other
    sources' (an instance's own lines fail the request instead: they were asked for)."""
    try:
        yield from local() if node == me else forward()
    except (Unavailable, requests.RequestException) as e:
        yield f"(vcapp: no {what} from {node}: {e})"


def _kept_lines(app: str, node: str, record: dict, me: str, instance: str | None, tail: int | None,
                since: float | None, auth: str) -> Iterator[str]:
    """The kept output of the app's containers that are gone from `node`, each line prefixed
    "<instance> (r<release>, ended <time> on <node>)| "."""
    params = {"kept": "1", **({"instance": instance} if instance is not None else {})}
    return _machine_lines(node, me, lambda: _local_kept_lines(app, instance, since, tail, me),
                          lambda: _forwarded(record, node, app, params, False, tail, since,
                                             f"the kept logs on {node}", auth),
                          "logs of ended containers")


def _local_kept_lines(app: str, instance: str | None, since: float | None, tail: int | None,
                      me: str) -> Iterator[str]:
    from runtime import keptlogs
    from vcapp.machine import kept_logs_dir

    for kept in keptlogs.listing(kept_logs_dir(), app, instance, since):
        ended = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(kept.ended))
        head = f"{kept.instance} (r{kept.release}, ended {ended}Z on {me})| "
        yield from (head + line for line in keptlogs.lines(kept, tail))


def _router_lines(app: str, node: str, record: dict, me: str, hosts: set[str], follow: bool, tail: int | None,
                  since: float | None, auth: str, stopped: Callable[[], bool]) -> Iterator[str]:
    """`node`'s router's access lines for the app."""
    return _machine_lines(node, me, lambda: _local_router_lines(app, hosts, since, tail, follow, stopped),
                          lambda: _forwarded(record, node, app, {"router": "1"}, follow, tail, since,
                                             f"the router of {node}", auth),
                          "access lines")


def _local_router_lines(app: str, hosts: set[str], since: float | None, tail: int | None, follow: bool,
                        stopped: Callable[[], bool] = lambda: False) -> Iterator[str]:
    """This machine's router's access lines for the app, each naming the instance it went to."""
    from runtime.podman import PodmanDriver, PodmanError
    from vcapp.machine import data_dir

    driver, ports, looked = PodmanDriver.from_env(), {}, [0.0]

    def instance(upstream: str) -> str:
        if upstream not in ports and time.monotonic() - looked[0] > 2.0:  # a new container: look again
            looked[0] = time.monotonic()
            try:
                ports.update({f"127.0.0.1:{c.host_port}": c.instance for c in driver.list()
                              if c.app == app and c.host_port})
            except PodmanError:
                pass
        return ports.get(upstream, upstream)

    path = access_log_path(data_dir() / "router")
    for entry in accesslog.read(path, hosts, since, tail, follow, stopped):
        yield accesslog.format_line(entry, instance)


def _forwarded(record: dict, node: str, app: str, params: dict, follow: bool, tail: int | None,
               since: float | None, what: str, auth: str) -> Iterator[str]:
    api_url = record.get("api_url")
    if not api_url:
        raise Unavailable(f"machine {node} has no API address on record; is it still in the cluster?")
    params = {**params, "local": "1", "follow": "1" if follow else "0"}
    if tail:
        params["tail"] = str(tail)
    if since is not None:
        params["since"] = f"{since:.3f}"
    try:
        resp = requests.get(f"{api_url.rstrip('/')}/v1/apps/{app}/logs", params=params, stream=True,
                            headers={"Authorization": auth},
                            timeout=(FORWARD_CONNECT_TIMEOUT_S, None if follow else FORWARD_READ_TIMEOUT_S))
    except requests.RequestException as e:
        raise Unavailable(f"cannot reach machine {node} for the logs of {what} ({type(e).__name__}); "
                          f"`vcapp nodes` shows whether it is up") from None
    if not resp.ok:
        try:
            message = resp.json().get("error", resp.reason)
        except ValueError:
            message = resp.reason
        resp.close()
        raise Unavailable(f"machine {node} could not give the logs of {what}: {message}")
    return _stream(resp)


def _stream(resp: requests.Response) -> Iterator[str]:
    try:
        for line in resp.iter_lines(decode_unicode=True):
            yield line
    finally:
        resp.close()
