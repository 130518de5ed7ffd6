"""`vcapp tokens join|admin create|list|revoke`: the secrets machines join with and admins use.

A new token is printed once; the cluster keeps only its hash.
"""

from __future__ import annotations

import time

import click

from vcapp.api.validate import format_duration, parse_duration, parse_uses, token_id, token_name
from vcapp.cli import apptokens
from vcapp.cli.client import Client
from vcapp.cli.output import ago, api_errors, print_json, table, until
from vcapp.state.membership import DEFAULT_JOIN_USES

JOIN_HEADERS = ["ID", "NAME", "CREATED", "EXPIRES", "USES", "STATE"]
ADMIN_HEADERS = ["ID", "NAME", "SCOPE", "CREATED", "STATE"]


@click.group("tokens")
def tokens() -> None:
    """Join tokens (for machines) and admin tokens (for people and scripts)."""


@tokens.group("join")
def join() -> None:
    """Tokens a machine joins the cluster with (`vcapp node join TOKEN`)."""


@tokens.group("admin")
def admin() -> None:
    """Tokens that authorize the admin API and this CLI (`vcapp login URL`, then the token)."""


def join_state(t: dict, now: float) -> str:
    if t.get("revoked"):
        return "revoked"
    if t.get("expires_at") and now >= t["expires_at"]:
        return "expired"
    if t.get("max_uses") and t.get("uses", 0) >= t["max_uses"]:
        return "used up"
    return "active"


@join.command("create")
@click.option("--expires", default="1h", show_default=True, help="Lifetime: 30m, 1h, 2d, 1w, or never.")
@click.option("--uses", default=DEFAULT_JOIN_USES, type=int, show_default=True,
              help="How many machines may join with it (0 = any number until it expires).")
@click.option("--name", default="", help="A label: what the token is for.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@api_errors
def join_create(expires: str, uses: int, name: str, as_json: bool) -> None:
    """Create a join token and print it (once) with the command to run on the new machine."""
    body = {"expires": parse_duration(expires, "--expires"), "uses": parse_uses(uses),
            "name": token_name(name, required=False)}
    answer = Client.from_config().post("/v1/tokens/join", body)
    if as_json:
        print_json(answer)
        return
    lifetime = f"expires in {format_duration(body['expires'])}" if body["expires"] else "never expires"
    limit = f"{uses} use{'s' if uses != 1 else ''}" if uses else "any number of machines"
    click.echo(f"join token {answer['id']} created ({lifetime}, {limit}); it is shown only now.")
    click.echo(f"On {'the machine' if uses == 1 else 'each machine'} to add, run:\n")
    click.echo(f"  {answer['join_command']}\n")


@join.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@api_errors
def join_list(as_json: bool) -> None:
    """List join tokens (ids and state; secrets are never shown again)."""
    found = Client.from_config().get("/v1/tokens/join")["tokens"]
    if as_json:
        print_json(found)
        return
    now = time.time()
    rows = [[t["id"], t.get("name") or "-", ago(t.get("created_at"), now), until(t.get("expires_at"), now),
             f"{t.get('uses', 0)}/{t['max_uses'] if t.get('max_uses') else 'any'}", join_state(t, now)]
            for t in sorted(found, key=lambda t: t.get("created_at", 0))]
    click.echo(table(JOIN_HEADERS, rows) if rows else "no join tokens")


@join.command("revoke")
@click.argument("token")
@api_errors
def join_revoke(token: str) -> None:
    """Revoke join token TOKEN (its id) so no more machines join with it."""
    Client.from_config().delete(f"/v1/tokens/join/{token_id(token)}")
    click.echo(f"join token {token} revoked")


@admin.command("create")
@click.option("--name", required=True, help="Who or what holds it, e.g. alice-laptop.")
@click.option("--scope", type=click.Choice(["admin", "edge"]), default="admin", show_default=True,
              help="edge: may only read the routes table and report certificates (for `vcapp edge setup`).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@api_errors
def admin_create(name: str, scope: str, as_json: bool) -> None:
    """Create an admin token and print it (once)."""
    client = Client.from_config()
    answer = client.post("/v1/tokens/admin", {"name": token_name(name, required=True), "scope": scope})
    if as_json:
        print_json(answer)
        return
    if scope == "edge":
        click.echo(f"edge token {answer['id']} ({name}) created; it is shown only now:\n")
        click.echo(f"  {answer['token']}\n")
        click.echo("On the edge host, run `vcapp edge setup --domain DOMAIN --token-file -` and paste it "
                   "(then Ctrl-D): it is kept in a root-only file, never on a command line.")
        return
    click.echo(f"admin token {answer['id']} ({name}) created; it is shown only now:\n")
    click.echo(f"  {answer['token']}\n")
    click.echo(f"To use it, run `vcapp login {client.login.url}` and paste it at the prompt (kept out of your "
               "shell history), or give it to a script as VCAPP_TOKEN.")


@admin.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@api_errors
def admin_list(as_json: bool) -> None:
    """List admin tokens (ids, names, state; secrets are never shown again)."""
    answer = Client.from_config().get("/v1/tokens/admin")
    if as_json:
        print_json(answer["tokens"])
        return
    now = time.time()
    rows = [[t["id"], t.get("name"), t.get("scope", "admin"), ago(t.get("created_at"), now),
             "revoked" if t.get("revoked") else "active"]
            for t in sorted(answer["tokens"], key=lambda t: t.get("created_at", 0))]
    click.echo(table(ADMIN_HEADERS, rows))


@admin.command("revoke")
@click.argument("token")
@api_errors
def admin_revoke(token: str) -> None:
    """Revoke admin token TOKEN (its id); whoever holds it loses access at once."""
    Client.from_config().delete(f"/v1/tokens/admin/{token_id(token)}")
    click.echo(f"admin token {token} revoked")


# End-user access tokens for apps: `vcapp tokens create|list|revoke APP` (vcapp/cli/apptokens.py).
for _command in (apptokens.create, apptokens.list_, apptokens.revoke):
    tokens.add_command(_command)
