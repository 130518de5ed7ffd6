"""`vcapp node ...`: this machine's membership (join, leave, the daemon) and removing others."""

from __future__ import annotations

import click

from vcapp.client import Client
from vcapp.commands.cluster import join, leave, run
from vcapp.commands.output import api_errors


@click.group()
def node() -> None:
    """Machines: join this one, leave, run the daemon, remove another."""


node.add_command(join)
node.add_command(leave)
node.add_command(run)


@node.command("remove")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@api_errors
def remove(name: str, yes: bool) -> None:
    """Remove machine NAME from the cluster (its etcd member too). Its apps move elsewhere."""
    if not yes:
        click.confirm(f"remove machine {name} from the cluster?", abort=True)
    answer = Client.from_config().delete(f"/v1/nodes/{name}")
    extra = " and its etcd member" if answer.get("etcd_member_removed") else ""
    click.echo(f"machine {name}{extra} removed; to bring it back, join it again with a join token")
