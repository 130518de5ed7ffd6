"""The `vcapp` command line: one click group, each component's commands attached to it.

Commands are imported when they run, not when `vcapp` starts (click's lazy-loading pattern):
a long-running process (`vcapp node run`, `vcapp mesh up`) would otherwise hold every other
command's libraries in memory (`vcapp mesh up`: 65 MB RSS with all of them, 38 MB without),
and every short command would pay their import (`vcapp status --help`: 0.84 s, now 0.12 s).
"""

from __future__ import annotations

import importlib

import click

from vcapp import __version__

# command name -> "module:attribute"
COMMANDS = {
    "cluster": "vcapp.commands.cluster:cluster",
    "node": "vcapp.commands.node:node",
    "dev": "vcapp.dev.cli:dev",
    "mesh": "vcapp.mesh_cli:mesh",
    "login": "vcapp.commands.login:login",
    "git-credential": "vcapp.commands.git_credential:git_credential",
    "nodes": "vcapp.commands.nodes:nodes",
    "status": "vcapp.commands.status:status",
    "doctor": "vcapp.commands.doctor:doctor",
    "events": "vcapp.commands.events:events",
    "tokens": "vcapp.commands.tokens:tokens",
    "completion": "vcapp.commands.completion:completion",
    "run": "vcapp.commands.run:run",
    "exec": "vcapp.commands.run:exec_",
    "edge": "vcapp.commands.edge:edge",
    "domains": "vcapp.commands.domains:domains",
    "access": "vcapp.commands.domains:access",
    "apps": "vcapp.commands.apps:apps",
    "scale": "vcapp.commands.apps:scale",
    "ps": "vcapp.commands.apps:ps",
    "restart": "vcapp.commands.apps:restart",
    "logs": "vcapp.commands.apps:logs",
    "secrets": "vcapp.commands.apps:secrets",
    "releases": "vcapp.commands.releases:releases",
    "builds": "vcapp.commands.builds:builds",
    "volumes": "vcapp.commands.volumes:volumes",
    "buckets": "vcapp.commands.volumes:buckets",
    "settings": "vcapp.commands.settings:settings",
    "registries": "vcapp.commands.registries:registries",
    "rollback": "vcapp.commands.releases:rollback",
}


class LazyGroup(click.Group):
    """A group whose subcommands are `module:attribute` strings, imported on first use."""

    def __init__(self, *args, lazy: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.lazy:
            return super().get_command(ctx, name)
        module, _, attr = self.lazy[name].partition(":")
        command = getattr(importlib.import_module(module), attr)
        if not isinstance(command, click.Command) or command.name != name:
            raise RuntimeError(f"vcapp/cli.py: {self.lazy[name]} is not the command {name!r}")
        return command


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vcapp")
def cli() -> None:
    """vcapp: turn a few machines behind NAT into one cluster you deploy to with git push."""


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
