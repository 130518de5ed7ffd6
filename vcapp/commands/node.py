"""`vcapp node ...`: this machine's membership (join, leave, the daemon) and removing others."""

from __future__ import annotations

import click

from vcapp.commands.cluster import join, leave, run


@click.group()
def node() -> None:
    """Machines: join this one, leave, run the daemon, remove another."""


node.add_command(join)
node.add_command(leave)
node.add_command(run)
