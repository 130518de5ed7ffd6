"""`vcapp domains [--json]`: every name the edge serves and its certificate;
`vcapp domains add|list|remove APP HOST` and `vcapp access APP [public|token]`: how an app is
reached besides <app>.<cluster domain>, and whether visitors need a token."""

from __future__ import annotations

import click

from vcapp.cli.client import Client
from vcapp.cli.output import api_errors, print_json, table, until
from vcapp.state.access import policy as parse_policy
from vcapp.state.apps import app_name


@click.group("domains", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
@api_errors
def domains(ctx: click.Context, as_json: bool) -> None:
    """Every name the edge serves and its certificate (issued, pending, failed and why,
    expired, waiting for a first visit); subcommands manage an app's custom host names."""
    if ctx.invoked_subcommand is not None:
        return
    rows = Client.from_config().get("/v1/domains")["domains"]
    if as_json:
        print_json(rows)
        return
    click.echo(table(["NAME", "APP", "CERTIFICATE", "EXPIRES", "DETAIL"],
                     [[r["host"], r["app"] or "(api)", r["state"], until(r["not_after"]) if r["not_after"] else "-",
                       r["reason"]] for r in rows]))


@domains.command("add")
@click.argument("app")
@click.argument("host")
@api_errors
def add(app: str, host: str) -> None:
    """Serve APP at HOST too (e.g. www.example.org)."""
    answer = Client.from_config().post(f"/v1/apps/{app_name(app)}/domains", {"host": host})
    click.echo(f"{app} is now also served at https://{host.lower().rstrip('.')}/ "
               f"(point its DNS at the edge; the certificate comes on the first visit)")
    click.echo(f"domains of {app}: {', '.join(answer['domains'])}")


@domains.command("list")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@api_errors
def list_(app: str, as_json: bool) -> None:
    """APP's custom domains."""
    answer = Client.from_config().get(f"/v1/apps/{app_name(app)}/domains")
    if as_json:
        print_json(answer["domains"])
        return
    click.echo("\n".join(answer["domains"]) if answer["domains"] else f"{app} has no custom domains")


@domains.command("remove")
@click.argument("app")
@click.argument("host")
@api_errors
def remove(app: str, host: str) -> None:
    """Stop serving APP at HOST."""
    Client.from_config().delete(f"/v1/apps/{app_name(app)}/domains/{host}")
    click.echo(f"{app} is no longer served at {host}")


@click.command("access")
@click.argument("app")
@click.argument("policy", required=False)
@api_errors
def access(app: str, policy: str | None) -> None:
    """Show APP's access policy, or set it: public, or token (visitors need an access token)."""
    client = Client.from_config()
    if policy is None:
        click.echo(client.get(f"/v1/apps/{app_name(app)}/domains")["policy"])
        return
    answer = client.request("PUT", f"/v1/apps/{app_name(app)}/access", body={"policy": parse_policy(policy)})
    hint = " (give visitors tokens with `vcapp tokens create APP --name N`)" if answer["policy"] == "token" else ""
    click.echo(f"{app} access policy: {answer['policy']}{hint}")
