"""`vcapp completion [bash|zsh|fish]`: the shell completion script, from click."""

from __future__ import annotations

import os

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")
PROG = "vcapp"
ENV_VAR = "_VCAPP_COMPLETE"  # click's convention: _<PROG>_COMPLETE


def default_shell() -> str:
    shell = os.path.basename(os.environ.get("SHELL", ""))
    return shell if shell in SHELLS else "bash"


@click.command("completion")
@click.argument("shell", required=False, type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str | None) -> None:
    """Print the completion script for SHELL (default: yours).

    \b
    bash:  vcapp completion bash > ~/.local/share/bash-completion/completions/vcapp
    zsh:   vcapp completion zsh > "${fpath[1]}/_vcapp"
    fish:  vcapp completion fish > ~/.config/fish/completions/vcapp.fish
    """
    shell = shell or default_shell()
    root = ctx.find_root().command
    source = get_completion_class(shell)(root, {}, PROG, ENV_VAR).source()
    click.echo(source)
