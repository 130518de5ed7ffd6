"""`vcapp dev ...`: bring the simulated cluster up and down and act on its machines."""

from __future__ import annotations

import json
import os
import sys
import time

import click

from vcapp.dev import egress, platform, power
from vcapp.dev.cluster import DevCluster, DevError, list_clusters
from vcapp.dev.topology import NAT_MODES, TopologyError, default

cluster_option = click.option(
    "--cluster", "-c", default=lambda: os.environ.get("VCAPP_DEV_CLUSTER", "dev"),
    show_default="dev (or $VCAPP_DEV_CLUSTER)", help="Name of the simulated cluster.",
)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise click.ClickException("vcapp dev creates network namespaces: run it as root (sudo)")


def _fail(e: Exception) -> click.ClickException:
    return click.ClickException(str(e))


@click.group()
def dev() -> None:
    """A local multi-machine cluster in network namespaces (home and office sites behind NAT)."""


@dev.command()
@cluster_option
@click.option("--home", default=2, show_default=True, help="Machines at the home site.")
@click.option("--office", default=1, show_default=True, help="Machines at the office site.")
@click.option("--office-nat", type=click.Choice(list(NAT_MODES)), default="easy", show_default=True,
              help="How the office router behaves: easy NAT, port-randomizing (hard) NAT, or UDP blocked.")
@click.option("--bare", is_flag=True, help="Only the network and the machines: no vcapp on them.")
def up(cluster: str, home: int, office: int, office_nat: str, bare: bool) -> None:
    """Create the topology, boot every machine and run vcapp on them (safe to run again)."""
    _require_root()
    started = time.monotonic()
    try:
        dc = DevCluster(cluster)
        dc.up(default(cluster, home, office, office_nat))
        _print_status(dc.status())
        if not bare:
            click.echo("")
            say = lambda line: click.echo(f"==> {line}")  # noqa: E731
            found = platform.install(dc, say=say)
            app_url = platform.deploy_sample(dc, found, say=say)
    except (DevError, TopologyError) as e:
        raise _fail(e)
    click.echo(f"\ncluster {cluster!r} is up ({time.monotonic() - started:.1f}s).")
    click.echo(f"its one way out: the proxy {dc.proxy_url}, for {', '.join(egress.ALLOWED)} only")
    first = dc.topology.machines()[0].name
    if not bare:
        click.echo(dc.run(first, ["vcapp", "status"]).stdout)
        click.echo(f"admin API: {found.api_url} (token in {first}'s ~/.config/vcapp/config.json)")
        edge = dc.topology.host("edge").addr
        click.echo(f"\nsample app: {app_url}\n  from the client host (the internet side):\n"
                   f"  vcapp dev exec client -- curl --cacert {platform.edge_ca(dc)} "
                   f"--resolve {app_url.split('//')[1]}:443:{edge} {app_url}\n")
    click.echo("Next:")
    click.echo(f"  vcapp dev exec {first} -- vcapp status    the cluster as an admin sees it")
    click.echo(f"  vcapp dev kill {first}                  power a machine off (revive boots it)")
    click.echo("  vcapp dev down                          remove everything")


@dev.command()
@cluster_option
@click.option("--all", "everything", is_flag=True, help="Every simulated cluster on this host.")
def down(cluster: str, everything: bool) -> None:
    """Remove namespaces, processes, mounts and files of the cluster (even after a crash)."""
    _require_root()
    for name in list_clusters() if everything else [cluster]:
        DevCluster(name).down()
        click.echo(f"cluster {name!r} removed")


@dev.command()
@cluster_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(cluster: str, as_json: bool) -> None:
    """Show the hosts with their addresses, power and links."""
    try:
        st = DevCluster(cluster).status()
    except DevError as e:
        raise _fail(e)
    if as_json:
        click.echo(json.dumps(st, indent=2))
    else:
        _print_status(st)


def _print_status(st: dict) -> None:
    rows = [("HOST", "ROLE", "SITE", "ADDRESSES", "POWER", "LINK")]
    for h in st["hosts"]:
        addrs = " ".join(a for lst in h["addresses"].values() for a in lst)
        link = "cut" if h["partitioned"] else "ok"
        role = f"{h['role']} ({h['nat']} NAT)" if h["nat"] else h["role"]
        rows.append((h["name"], role, h["site"] or "-", addrs, h["power"], link))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    click.echo(f"cluster {st['cluster']}  ({st['dir']})")
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _host_action(name: str, action) -> None:
    _require_root()
    try:
        return action()
    except (DevError, TopologyError) as e:
        raise _fail(e)


@dev.command()
@cluster_option
@click.argument("node")
def kill(cluster: str, node: str) -> None:
    """Power a machine off: SIGKILL everything it runs, link down."""
    n = _host_action(node, lambda: DevCluster(cluster).kill(node))
    click.echo(f"{node}: powered off ({n} processes killed)")


@dev.command()
@cluster_option
@click.argument("node")
def revive(cluster: str, node: str) -> None:
    """Boot a machine that was killed."""
    _host_action(node, lambda: DevCluster(cluster).revive(node))
    click.echo(f"{node}: booted")


@dev.command()
@cluster_option
@click.argument("node")
@click.option("--heal", is_flag=True, help="Plug the cable back in.")
def partition(cluster: str, node: str, heal: bool) -> None:
    """Cut a machine off the network without stopping it (--heal reconnects)."""
    _host_action(node, lambda: DevCluster(cluster).partition(node, cut=not heal))
    click.echo(f"{node}: {'reconnected' if heal else 'cut off the network'}")


@dev.command()
@cluster_option
@click.argument("site")
@click.argument("mode", type=click.Choice(list(NAT_MODES)))
def nat(cluster: str, site: str, mode: str) -> None:
    """Change how a site's router translates: easy, hard (port-randomizing) or udp-blocked."""
    _host_action(site, lambda: DevCluster(cluster).set_nat(site, mode))
    click.echo(f"{site} router: {mode} ({NAT_MODES[mode]})")


@dev.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@cluster_option
@click.argument("node")
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED, required=True)
def exec(cluster: str, node: str, cmd: tuple[str, ...]) -> None:
    """Run CMD on a machine: vcapp dev exec home-1 -- ip addr"""
    _require_root()
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise click.UsageError("say what to run: vcapp dev exec NODE -- CMD [ARGS...]")
    try:
        argv, env, cgroup = DevCluster(cluster).command(node, list(cmd))
    except (DevError, TopologyError) as e:
        raise _fail(e)
    power.join_cgroup(cgroup)
    sys.stdout.flush()
    os.execvpe(argv[0], argv, env)
