"""`vcapp node upgrade SOURCE`: upgrade this machine's vcapp with its apps kept serving.

As `kubectl drain`, the package upgrade and `kubectl uncordon` do for a Kubernetes node: the
machine is drained (its instances start elsewhere, each healthy before the old one stops), the
wheel or source tree is installed into the Python the node daemon runs, the daemon restarts on
the new code, and once the cluster sees the machine up with the new build it takes instances
again. Run it on one machine at a time; the cluster keeps working with two builds meanwhile.
A failure stops where it is and says what to do; the machine stays drained until it runs the
new build or the admin undrains it.
"""

from __future__ import annotations

import time

import click

from vcapp.cli.client import Client, ClientError
from vcapp.cli.output import api_errors
from vcapp.cli.status import storage_why
from vcapp.errors import Conflict, Unavailable, VcError
from vcapp.machine import NodeConfig
from vcapp.node import upgrade as local

DRAIN_TIMEOUT_S = 600.0  # each instance moved healthy-first; a slow health check takes minutes
BACK_TIMEOUT_S = 180.0  # the restarted daemon: etcd, mesh, API, then its record refreshed
STORAGE_TIMEOUT_S = 300.0  # its volume servers back and caught up: the next machine may stop theirs
POLL_S = 1.0
PROGRESS_EVERY_S = 10.0


def _machines(client: Client) -> dict[str, dict]:
    """Every machine's record (up, drained, version, build), as any release's API lists it."""
    return {n["name"]: n for n in client.get("/v1/nodes")["nodes"]}


def _instances_on(client: Client, name: str) -> list[dict]:
    return next((n.get("instances") or [] for n in client.get("/v1/dashboard")["nodes"] if n["name"] == name), [])


def _wait(what: str, timeout: float, check, say) -> None:
    """Poll `check` (truthy when done; a string is progress to show) until done or `timeout`.
    The API restarting with the daemon answers nothing for a while: that is waiting too."""
    deadline, shown = time.monotonic() + timeout, time.monotonic()
    while True:
        try:
            got = check()
        except ClientError as e:
            got = f"the API does not answer yet ({e})"
        if got is True:
            return
        if time.monotonic() > deadline:
            raise Unavailable(f"{what}: not done after {timeout:.0f} s ({got or 'no answer'})")
        if isinstance(got, str) and time.monotonic() - shown >= PROGRESS_EVERY_S:
            say(f"  ... {got}")
            shown = time.monotonic()
        time.sleep(POLL_S)


@click.command("upgrade")
@click.argument("source")
@click.option("--no-drain", is_flag=True,
              help="Restart in place: this machine's instances stop for the restart (a cluster of one).")
@api_errors
def upgrade(source: str, no_drain: bool) -> None:
    """Upgrade this machine to SOURCE, a vcapp wheel (vcapp-*.whl) or source directory: drain it,
    install SOURCE into the node daemon's Python, restart the daemon, take instances again.
    One machine at a time; `vcapp nodes` shows each machine's version and build."""
    say = click.echo
    cfg = NodeConfig.load()
    if cfg is None:
        raise Conflict("this machine is in no cluster: nothing to upgrade (`vcapp node join` makes it a member; "
                       "a machine that joins runs the vcapp installed here)")
    name = cfg.name
    target = local.read_source(source)
    argv = local.daemon_argv()
    python = local.python_of(argv)
    client = Client.from_config()
    machines = _machines(client)
    if name not in machines:
        raise Conflict(f"this machine ({name}) is not in the cluster the CLI is logged in to; "
                       "`vcapp login` to its API first")
    me = machines[name]
    if me.get("build") == target.build:
        drained = f"; it is drained: `vcapp node undrain {name}` takes it back" if me.get("drained") else ""
        say(f"{name} already runs build {target.build[:7]}; nothing to do{drained}")
        return
    refusal = local.skew_refusal({m: n.get("build") or "" for m, n in machines.items()}, name, target.build)
    if refusal:
        raise Conflict(refusal)
    down = sorted(m for m, n in machines.items() if m != name and not n.get("up"))
    if down and not no_drain:
        raise Conflict(f"machine{'s' if len(down) > 1 else ''} {', '.join(down)} down: bring "
                       f"{'them' if len(down) > 1 else 'it'} back (or remove {'them' if len(down) > 1 else 'it'}) "
                       "before upgrading another, so this one's apps have somewhere to go")
    was_drained = bool(me.get("drained"))
    now = f"build {me['build'][:7]}" if me.get("build") else f"{me.get('version') or 'a release'} (before builds)"
    say(f"upgrading {name} from {now} to build {target.build[:7]} ({target.path.name})")
    storage_was = _storage_state(client)
    try:
        _roll(client, name, target, argv, python, drain=not no_drain, drained_already=was_drained, say=say)
        if storage_was == "healthy":
            say("waiting for app data to keep three copies again (this machine's volume servers restarted)")
            _wait("app data back to three copies", STORAGE_TIMEOUT_S, lambda: _storage_healthy(client), say)
    except (ClientError, VcError) as e:
        stays = f"; {name} stays drained until `vcapp node undrain {name}`" if not no_drain and not was_drained else ""
        raise type(e)(f"{e.message}{stays}") from None
    if not no_drain and not was_drained:
        client.post(f"/v1/nodes/{name}/undrain", {})
        say(f"{name} takes instances again")
    say(f"{name} runs build {target.build[:7]}; upgrade the next machine the same way "
        "(`vcapp nodes` shows each machine's build)")


def _storage_state(client: Client) -> str:
    return _storage(client).get("state") or "unknown"


def _storage(client: Client) -> dict:
    return client.get("/v1/status").get("storage") or {}


def _storage_healthy(client: Client) -> bool | str:
    st = _storage(client)
    return True if st.get("state") == "healthy" else f"app data {st.get('state') or 'unknown'}{storage_why(st)}"


def _roll(client: Client, name: str, target: local.Source, argv: list[str], python: str, drain: bool,
          drained_already: bool, say) -> None:
    """Drain (when asked; a machine drained before still has its instances waited out),
    install, restart, and wait for the machine on the new build."""
    if drain:
        if not drained_already:
            client.post(f"/v1/nodes/{name}/drain", {})
        say(f"draining {name}: its instances start on other machines, each healthy before the old one stops")

        def drained():
            left = _instances_on(client, name)
            return True if not left else f"{len(left)} instance(s) still here: " + ", ".join(
                f"{i['app']}/{i['instance']}" for i in left)

        _wait(f"draining {name}", DRAIN_TIMEOUT_S, drained, say)

    say(f"installing {target.path} into {python}")
    installed = local.install(python, target)
    if installed != target.build:
        raise Conflict(f"{python} imports build {installed[:7]} after the install, not {target.build[:7]}: another "
                       "vcapp is ahead of it on its path; the daemon was not restarted")
    say("restarting the node daemon")
    local.restart(argv)

    def back():
        node = _machines(client).get(name)
        if node is None:
            raise Conflict(f"{name} is no longer in the cluster (removed meanwhile?); its daemon runs the new build")
        if node.get("up") and node.get("build") == target.build:
            return True
        return f"{name} is {'up' if node.get('up') else 'not up yet'}, build {(node.get('build') or '-')[:7]}"

    _wait(f"{name} back on build {target.build[:7]}", BACK_TIMEOUT_S, back, say)
