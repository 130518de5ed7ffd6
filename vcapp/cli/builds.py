"""`vcapp builds APP` and `vcapp builds log APP [N]`: every push, what became of it, its log."""

from __future__ import annotations

import click

from vcapp.cli.client import Client
from vcapp.cli.output import api_errors, clock, print_json, table

HEADERS = ["BUILD", "RESULT", "SHA", "WHEN", "TOOK", "WHO", "BUILT ON", "RELEASE", "REASON"]


class AppOrCommand(click.Group):
    """`vcapp builds APP` lists; `vcapp builds log APP [N]` prints a log: a first word that is
    not a subcommand is the app (an app named like one: `vcapp builds list log`)."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["list", *args]
        return super().resolve_command(ctx, args)


def rows(found: list[dict]) -> list[list]:
    out = []
    for b in reversed(found):  # newest first
        result = b.get("result", "-") + (f" ({b['stage']})" if b.get("stage") else "")
        took = f"{b['seconds']:.0f} s" if isinstance(b.get("seconds"), (int, float)) else "-"
        reason = "" if b.get("result") == "succeeded" else (b.get("reason") or "").strip().split("\n", 1)[0][:80]
        out.append([b["number"], result, (b.get("sha") or "")[:7], clock(b.get("started")), took, b.get("who") or "-",
                    b.get("built_on") or "-", f"v{b['release']}" if b.get("release") else "-", reason])
    return out


@click.group("builds", cls=AppOrCommand, invoke_without_command=False)
def builds() -> None:
    """Every push to APP: `vcapp builds APP` lists them, `vcapp builds log APP [N]` prints one's log."""


@builds.command("list")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@api_errors
def list_builds(app: str, as_json: bool) -> None:
    """List APP's builds, newest first: result, commit, when, how long, who, where, release."""
    answer = Client.from_config().get(f"/v1/apps/{app}/builds")
    if as_json:
        print_json(answer)
        return
    if not answer["builds"]:
        click.echo(f"{app} has no builds yet: git push to its repository to make one")
        return
    click.echo(table(HEADERS, rows(answer["builds"])))
    failed = next((b for b in reversed(answer["builds"]) if b.get("result") in ("failed", "refused")), None)
    if failed:
        click.echo(f"\n`vcapp builds log {app} {failed['number']}` prints the log of build {failed['number']}")


@builds.command("log")
@click.argument("app")
@click.argument("number", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@api_errors
def log(app: str, number: str | None, as_json: bool) -> None:
    """Print the whole kept log of build NUMBER of APP (default: the newest)."""
    answer = Client.from_config().get(f"/v1/apps/{app}/builds/{(number or 'latest').lstrip('#')}")
    if as_json:
        print_json(answer)
        return
    click.echo(answer.get("log") or "(this build kept no log)")
    stage = f" ({answer['stage']})" if answer.get("stage") and answer.get("result") != "succeeded" else ""
    click.echo(f"=====> build {answer['number']} of {app}: {answer.get('result')}{stage}", err=True)
