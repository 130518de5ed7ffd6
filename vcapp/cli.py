"""The `vcapp` command line: one click group, each component's commands attached to it."""

from __future__ import annotations

import click

from vcapp import __version__
from vcapp.commands.apps import apps, logs, ps, restart, scale, secrets
from vcapp.commands.builds import builds
from vcapp.commands.cluster import cluster
from vcapp.commands.completion import completion
from vcapp.commands.domains import access, domains
from vcapp.commands.edge import edge
from vcapp.commands.events import events
from vcapp.commands.git_credential import git_credential
from vcapp.commands.login import login
from vcapp.commands.node import node
from vcapp.commands.nodes import nodes
from vcapp.commands.registries import registries
from vcapp.commands.releases import releases, rollback
from vcapp.commands.run import run
from vcapp.commands.settings import settings
from vcapp.commands.status import status
from vcapp.commands.tokens import tokens
from vcapp.commands.volumes import buckets, volumes
from vcapp.dev.cli import dev
from vcapp.mesh_cli import mesh


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vcapp")
def cli() -> None:
    """vcapp: turn a few machines behind NAT into one cluster you deploy to with git push."""


cli.add_command(cluster)
cli.add_command(node)
cli.add_command(dev)
cli.add_command(mesh)
cli.add_command(login)
cli.add_command(git_credential)
cli.add_command(nodes)
cli.add_command(status)
cli.add_command(events)
cli.add_command(tokens)
cli.add_command(completion)
cli.add_command(run)
cli.add_command(edge)
cli.add_command(domains)
cli.add_command(access)
for command in (apps, scale, ps, restart, logs, secrets):
    cli.add_command(command)
cli.add_command(releases)
cli.add_command(builds)
cli.add_command(volumes)
cli.add_command(buckets)
cli.add_command(settings)
cli.add_command(registries)
cli.add_command(rollback)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
