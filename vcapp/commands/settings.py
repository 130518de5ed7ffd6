"""`vcapp settings show|set|unset`: cluster settings (vcapp/buildproxy.py), e.g. the forward
proxy builds reach package registries through."""

from __future__ import annotations

import click

from vcapp import buildproxy
from vcapp.client import Client
from vcapp.commands.output import api_errors, print_json


@click.group()
def settings() -> None:
    """Cluster settings: build.proxy (the forward proxy builds reach PyPI, npm, Debian through)."""


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
@api_errors
def set_(name: str, value: str) -> None:
    """Set NAME to VALUE, e.g. vcapp settings set build.proxy http://proxy.example:3128"""
    value = buildproxy.check_url(value)  # the API checks again; a typo fails here, before any request
    Client.from_config().request("PUT", f"/v1/settings/{name}", {"value": value})
    click.echo(f"{name} = {value or '(not set)'}")


@settings.command("unset")
@click.argument("name", type=click.Choice(buildproxy.SETTINGS))
@api_errors
def unset(name: str) -> None:
    """Clear NAME: builds reach the registries directly again."""
    Client.from_config().request("PUT", f"/v1/settings/{name}", {"value": ""})
    click.echo(f"{name} = (not set)")
