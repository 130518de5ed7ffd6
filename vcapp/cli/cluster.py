"""`vcapp cluster init` and the machine-side node commands: `vcapp node join / leave / run`."""

from __future__ import annotations

import os

import click

from vcapp.cli import gitconfig
from vcapp.cli.client import Login, save_login
from vcapp.cli.credential_helper import cluster_git_urls
from vcapp.errors import VcError
from vcapp.machine import NodeConfig, derived_key
from vcapp.node import bootstrap
from vcapp.state.etcd_members import DEFAULT_REPLACE_AFTER


def parse_labels(pairs: tuple[str, ...]) -> dict:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: labels are KEY=VALUE (e.g. gpu=true)", param_hint="--label")
        labels[key] = value
    return labels


def machine_options(name_flag: str):
    return lambda f: _add_machine_options(f, name_flag)


def _add_machine_options(f, name_flag: str):
    f = click.option("--label", "labels", multiple=True, help="KEY=VALUE, e.g. gpu=true (repeatable).")(f)
    f = click.option("--addr", default=None, help="Address the other machines reach this one at "
                     "[default: the default route's interface address].")(f)
    f = click.option("--site", default=lambda: os.environ.get("VCAPP_SITE") or "default", show_default="$VCAPP_SITE or default",
                     help="Where this machine stands (home, office, ...): instances spread across sites.")(f)
    f = click.option(name_flag, "node_name", default=None, help="This machine's name [default: its hostname].")(f)
    return f


@click.group()
def cluster() -> None:
    """Create a cluster."""


@cluster.command()
@click.option("--name", required=True, help="Cluster name, e.g. acme.")
@click.option("--domain", required=True, help="Apps are served at <app>.<domain>.")
@click.option("--edge", default="", help="The edge's public host:port (mesh coordination and ingress).")
@click.option("--max-nodes", default=10, show_default=True, help="At most this many machines (10 at most).")
@machine_options("--node-name")
def init(name, domain, edge, max_nodes, node_name, site, addr, labels) -> None:
    """Found a cluster on this machine; prints the first admin token and join token."""
    try:
        node_name = node_name or bootstrap.default_name()
        addr = addr or bootstrap.default_addr()
        record, admin, join = bootstrap.init_cluster(
            name=name, domain=domain, edge=edge, node_name=node_name, site=site, addr=addr,
            labels=parse_labels(labels), max_nodes=max_nodes)
    except VcError as e:
        raise click.ClickException(e.message)
    announce(record, admin, join, node_name)


def announce(record: dict, admin, join, node_name: str) -> None:
    """Log this machine in and print what a founded cluster's admin needs next."""
    addr = NodeConfig.load().addr  # the overlay address when the cluster runs on the mesh
    url = f"http://{addr}:7180"
    git_urls = cluster_git_urls(url, record.get("domain"), [])
    save_login(Login(url, str(admin), git_urls))
    click.echo(f"cluster {record['name']} created on {node_name} ({addr}), apps at *.{record['domain']}\n")
    click.echo(f"admin token (shown once; this machine is logged in with it):\n  {admin}\n")
    click.echo(f"join token (valid 1 hour, for the cluster's other machines; make more with "
               f"`vcapp tokens join create`):\n  {join}\n")
    if record.get("mesh_coord"):
        mesh_key = derived_key("mesh").hex()
        click.echo(f"mesh key (secret; shown once):\n  {mesh_key}\n")
        click.echo("on the edge host (once; it starts the mesh hub at every boot):\n"
                   "  vcapp edge setup --mesh-key-file FILE   (FILE: that key; - reads it from standard input)\n")
    click.echo("on every other machine:\n  vcapp node join <join token>")
    click.echo(f"from an admin laptop (it asks for the admin token and sets git up for git push):\n"
               f"  vcapp login {url}")
    for git_url in (url, *git_urls):
        click.echo(gitconfig.register_helper(git_url))


@click.command()
@click.argument("token")
@machine_options("--name")
def join(token, node_name, site, addr, labels) -> None:
    """Join this machine to a cluster with a join token."""
    try:
        node_name = node_name or bootstrap.default_name()
        addr = addr or bootstrap.default_addr()
        answer = bootstrap.join_cluster(token, node_name=node_name, site=site, addr=addr, labels=parse_labels(labels))
    except VcError as e:
        raise click.ClickException(e.message)
    click.echo(f"{node_name} joined cluster {answer['cluster']['name']} (site {site}, {answer['node']['addr']}); it is up.")


@click.command()
def leave() -> None:
    """Take this machine out of its cluster (its etcd member too) and stop the daemon."""
    try:
        name = bootstrap.leave_cluster()
    except VcError as e:
        raise click.ClickException(e.message)
    click.echo(f"left cluster {name}")


@click.command()
@click.option("--replace-after", default=DEFAULT_REPLACE_AFTER, show_default=True, type=float,
              help="Seconds a dead etcd member's machine may stay down before another machine takes its place.")
def run(replace_after: float) -> None:
    """The node daemon: etcd member, API server, mesh, liveness, the loops. Run it under the
    machine's service manager so it starts at boot; `vcapp dev` runs one per simulated machine."""
    from vcapp.node.daemon import main

    main(replace_after)
