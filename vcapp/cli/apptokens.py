"""`vcapp tokens create|list|revoke APP`: end-user access tokens for apps whose policy is
`token` (`vcapp access APP token`). A new token is printed once; the cluster keeps its hash.

These commands hang off the `tokens` group (vcapp/cli/tokens.py).
"""

from __future__ import annotations

import time

import click

from vcapp.api.validate import format_duration, parse_duration, token_name
from vcapp.cli.client import Client
from vcapp.cli.output import ago, api_errors, print_json, table, until
from vcapp.state.apps import app_name
from vcapp.state.apptokens import check_id

HEADERS = ["ID", "NAME", "CREATED", "EXPIRES", "STATE"]


def state(t: dict, now: float) -> str:
    if t.get("revoked"):
        return "revoked"
    if t.get("expires_at") and now >= t["expires_at"]:
        return "expired"
    return "active"


@click.command("create")
@click.argument("app")
@click.option("--name", required=True, help="Who or what holds it, e.g. alice-phone.")
@click.option("--expires", default="never", show_default=True, help="Lifetime: 30m, 12h, 30d, or never.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@api_errors
def create(app: str, name: str, expires: str, as_json: bool) -> None:
    """Create an access token for APP and print it (once)."""
    body = {"name": token_name(name, required=True), "expires": parse_duration(expires, "--expires")}
    answer = Client.from_config().post(f"/v1/apps/{app_name(app)}/tokens", body)
    if as_json:
        print_json(answer)
        return
    lifetime = f"expires in {format_duration(body['expires'])}" if body["expires"] else "never expires"
    click.echo(f"access token {answer['id']} ({name}) for {app} created ({lifetime}); it is shown only now:\n")
    click.echo(f"  {answer['token']}\n")
    click.echo("Send it as `Authorization: Bearer TOKEN`, or open the app once with ?token=TOKEN in a browser.")


@click.command("list")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@api_errors
def list_(app: str, as_json: bool) -> None:
    """List APP's access tokens (ids and state; secrets are never shown again)."""
    found = Client.from_config().get(f"/v1/apps/{app_name(app)}/tokens")["tokens"]
    if as_json:
        print_json(found)
        return
    now = time.time()
    rows = [[t["id"], t.get("name") or "-", ago(t.get("created_at"), now), until(t.get("expires_at"), now),
             state(t, now)] for t in found]
    click.echo(table(HEADERS, rows) if rows else f"no access tokens for {app}")


@click.command("revoke")
@click.argument("app")
@click.argument("token")
@api_errors
def revoke(app: str, token: str) -> None:
    """Revoke APP's access token TOKEN (its id, from `vcapp tokens list APP`)."""
    Client.from_config().delete(f"/v1/apps/{app_name(app)}/tokens/{check_id(token)}")
    click.echo(f"access token {token} of {app} revoked; it stops working within seconds")
