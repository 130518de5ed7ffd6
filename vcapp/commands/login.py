"""`vcapp login URL TOKEN`: check an admin token against a cluster's API, then remember both."""

from __future__ import annotations

import click

from vcapp.client import Client, Login, normalize_url, save_login
from vcapp.commands.output import api_errors


@click.command("login")
@click.argument("url")
@click.argument("token", required=False)
@api_errors
def login(url: str, token: str | None) -> None:
    """Log in to the admin API at URL with an admin TOKEN (asked for when not given).

    The token is checked against the cluster first, then saved in ~/.config/vcapp/config.json
    (readable only by you).
    """
    if not token:
        token = click.prompt("admin token", hide_input=True).strip()
    credentials = Login(normalize_url(url), token.strip())
    answer = Client(credentials).get("/v1/status")
    path = save_login(credentials)
    count = answer["summary"]
    click.echo(f"logged in to cluster {answer['cluster']['name']} at {credentials.url} "
               f"as {answer.get('admin')!r} ({count['nodes']} machine{'s' if count['nodes'] != 1 else ''}, "
               f"{count['up']} up)")
    click.echo(f"saved to {path}")
