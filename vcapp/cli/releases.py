"""`vcapp releases APP` and `vcapp rollback APP [N]`: what each git push released, and going back."""

from __future__ import annotations

import click

from vcapp.api.releases import release_number
from vcapp.cli.client import Client
from vcapp.cli.output import api_errors, clock, print_json, table
from vcapp.state.releases import description

HEADERS = ["VERSION", "CHANGE", "STATUS", "WHEN", "WHO", "IMAGE", "MESSAGE"]


def rows(found: list[dict], current) -> list[list]:
    out = []
    for r in reversed(found):  # newest first, as people read a history
        status = r.get("status", "-") + (" (current)" if r["number"] == current else "")
        out.append([f"v{r['number']}", description(r), status, clock(r.get("time")), r.get("who"),
                    r.get("image"), r.get("message") or ""])
    return out


@click.command("releases")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@api_errors
def releases(app: str, as_json: bool) -> None:
    """List APP's releases, newest first: version, what changed (a deploy, secrets, limits, a
    rollback), status, when, who, image."""
    answer = Client.from_config().get(f"/v1/apps/{app}/releases")
    if as_json:
        print_json(answer)
        return
    if not answer["releases"]:
        click.echo(f"{app} has no releases yet: git push to its repository to make one")
        return
    click.echo(table(HEADERS, rows(answer["releases"], answer.get("current"))))


@click.command("rollback")
@click.argument("app")
@click.argument("release", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@api_errors
def rollback(app: str, release: str | None, as_json: bool) -> None:
    """Run the code of an earlier RELEASE of APP again, as a new release (default: the newest
    released one before the current with other code)."""
    body = {} if release is None else {"release": release_number(release)}
    answer = Client.from_config().post(f"/v1/apps/{app}/rollback", body)
    if as_json:
        print_json(answer)
        return
    click.echo(f"{app}: rolled back from v{answer['previous']} to v{answer['target']}'s code as v{answer['release']} "
               f"({answer['image']}); instances are replaced one by one, each new one healthy before the old stops")
