"""`vcapp settings show|set|unset`: cluster settings (vcapp/state/buildproxy.py): the forward proxy
builds reach package registries through, and the hosts they reach directly."""

from __future__ import annotations

import click

from vcapp.cli.client import Client
from vcapp.cli.output import api_errors, print_json
from vcapp.state import buildproxy


@click.group()
def settings() -> None:
    """Cluster settings: build.proxy (the forward proxy builds reach PyPI, npm, Debian through)
    and build.no_proxy (hosts builds reach directly: a LAN mirror or package cache)."""


@settings.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@api_errors
def show(as_json: bool) -> None:
    """Every setting and its value."""
    values = Client.from_config().request("GET", "/v1/settings")
    if as_json:
        print_json(values)
        return
    for name, value in values.items():
        click.echo(f"{name} = {value if value is not None else '(not set)'}")


@settings.command("set")
@click.argument("name", type=click.Choice(buildproxy.SETTINGS))
@click.argument("value")
@click.option("--password-stdin", is_flag=True,
              help="Read the proxy's password from standard input (build.proxy http://USER@HOST:PORT).")
@api_errors
def set_(name: str, value: str, password_stdin: bool) -> None:
    """Set NAME to VALUE, e.g.

    \b
    vcapp settings set build.proxy http://proxy.example:3128
    echo "$PW" | vcapp settings set build.proxy http://me@proxy.example:3128 --password-stdin
    vcapp settings set build.no_proxy mirror.lan,.corp.example,10.0.0.0/8
    """
    body: dict = {"value": value}
    if password_stdin:
        if name != buildproxy.PROXY:
            raise click.UsageError(f"--password-stdin is for {buildproxy.PROXY}")
        body["password"] = click.get_text_stream("stdin").readline().rstrip("\r\n")
    # The API checks again; a typo fails here, before any request.
    if name == buildproxy.PROXY:
        buildproxy.check_url(value, body.get("password"))
    else:
        buildproxy.check_no_proxy(value)
    shown = Client.from_config().request("PUT", f"/v1/settings/{name}", body)
    click.echo(f"{name} = {shown.get(name) or '(not set)'}")


@settings.command("unset")
@click.argument("name", type=click.Choice(buildproxy.SETTINGS))
@api_errors
def unset(name: str) -> None:
    """Clear NAME (build.proxy: builds reach the registries directly again)."""
    Client.from_config().request("PUT", f"/v1/settings/{name}", {"value": ""})
    click.echo(f"{name} = (not set)")
