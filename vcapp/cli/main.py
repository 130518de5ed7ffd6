"""The `vcapp` command line: one click group, each component's commands attached to it.

Commands are imported when they run, not when `vcapp` starts (click's lazy-loading pattern):
a long-running process (`vcapp node run`, `vcapp mesh up`) would otherwise hold every other
command's libraries in memory (`vcapp mesh up`: 65 MB RSS with all of them, 38 MB without),
and every short command would pay their import (`vcapp status --help`: 0.84 s, now 0.12 s).
"""

from __future__ import annotations

import importlib

import click

# command name -> "module:attribute"
COMMANDS = {
    "cluster": "vcapp.cli.cluster:cluster",
    "node": "vcapp.cli.node:node",
    "dev": "vcapp.dev.cli:dev",
    "mesh": "vcapp.cli.mesh:mesh",
    "login": "vcapp.cli.login:login",
    "git-credential": "vcapp.cli.git_credential:git_credential",
    "nodes": "vcapp.cli.nodes:nodes",
    "status": "vcapp.cli.status:status",
    "doctor": "vcapp.cli.doctor:doctor",
    "events": "vcapp.cli.events:events",
    "tokens": "vcapp.cli.tokens:tokens",
    "completion": "vcapp.cli.completion:completion",
    "run": "vcapp.cli.run:run",
    "exec": "vcapp.cli.run:exec_",
    "edge": "vcapp.cli.edge:edge",
    "domains": "vcapp.cli.domains:domains",
    "access": "vcapp.cli.domains:access",
    "apps": "vcapp.cli.apps:apps",
    "scale": "vcapp.cli.apps:scale",
    "ps": "vcapp.cli.apps:ps",
    "restart": "vcapp.cli.apps:restart",
    "logs": "vcapp.cli.apps:logs",
    "secrets": "vcapp.cli.apps:secrets",
    "releases": "vcapp.cli.releases:releases",
    "builds": "vcapp.cli.builds:builds",
    "volumes": "vcapp.cli.volumes:volumes",
    "buckets": "vcapp.cli.volumes:buckets",
    "settings": "vcapp.cli.settings:settings",
    "registries": "vcapp.cli.registries:registries",
    "rollback": "vcapp.cli.releases:rollback",
    "backup": "vcapp.cli.backup:backup",
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
            raise RuntimeError(f"vcapp/cli/main.py: {self.lazy[name]} is not the command {name!r}")
        return command


def _print_version(ctx: click.Context, _param, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from vcapp import version  # hashes the installed code: only when asked

        click.echo(f"vcapp {version.describe()}")
        ctx.exit()


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, is_eager=True, expose_value=False, callback=_print_version,
              help="Show the release and build (`vcapp nodes` shows each machine's) and exit.")
def cli() -> None:
    """vcapp: turn a few machines behind NAT into one cluster you deploy to with git push."""


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
