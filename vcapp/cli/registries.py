"""`vcapp registries add|list|remove`: mirrors and credentials of the container registries
builds pull base images from (vcapp/state/registries.py)."""

from __future__ import annotations

import sys

import click

from vcapp.cli.client import Client
from vcapp.cli.output import api_errors, print_json
from vcapp.state import registries as regs


@click.group()
def registries() -> None:
    """Container registries builds pull FROM images from: mirrors, plain HTTP, credentials."""


@registries.command("add")
@click.argument("host")
@click.option("--mirror", default="", help="Pull this registry's images from URL first, e.g. http://mirror.lan:5000.")
@click.option("--username", default="", help="Log in to the registry (and its mirror) as this user.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (needs --username).")
@click.option("--insecure", is_flag=True, help="Allow plain HTTP or an unverified certificate (the mirror's, "
                                                "or the registry's without a mirror).")
@api_errors
def add(host: str, mirror: str, username: str, password_stdin: bool, insecure: bool) -> None:
    """Set HOST's mirror and credentials, e.g. vcapp registries add docker.io --mirror http://mirror.lan:5000"""
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else ""
    host = regs.check_host(host)  # the API checks again; a typo fails here, before any request
    regs.check_mirror(mirror)
    regs.check_login(username, password)
    body = {"mirror": mirror, "insecure": insecure, "username": username, "password": password}
    rec = Client.from_config().request("PUT", f"/v1/registries/{host}", body)
    click.echo(_line(rec))


@registries.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@api_errors
def list_(as_json: bool) -> None:
    """Every registry with a mirror or credentials (passwords are never shown)."""
    recs = Client.from_config().request("GET", "/v1/registries")["registries"]
    if as_json:
        print_json(recs)
        return
    if not recs:
        click.echo("no registries set: images are pulled from their own registries, docker.io for short names")
    for rec in recs:
        click.echo(_line(rec))


@registries.command("remove")
@click.argument("host")
@api_errors
def remove(host: str) -> None:
    """Remove HOST's mirror and credentials."""
    host = regs.check_host(host)
    Client.from_config().request("DELETE", f"/v1/registries/{host}")
    click.echo(f"{host}: removed")


def _line(rec: dict) -> str:
    parts = [f"mirror {rec['mirror']}" if rec.get("mirror") else "no mirror"]
    if rec.get("insecure"):
        parts.append("insecure")
    if rec.get("username"):
        parts.append(f"user {rec['username']} (password set)")
    return f"{rec['host']}: " + ", ".join(parts)
