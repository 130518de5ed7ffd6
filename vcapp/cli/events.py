"""`vcapp events`: the cluster's history (joins, machines up/down, tokens, deploys), or follow it."""

from __future__ import annotations

import json

import click

from vcapp.cli.client import Client
from vcapp.cli.output import api_errors, clock, print_json, table

LONG_POLL = 25  # the API holds a follow request at most this long
BEGINNING = "0000000000000-0000"  # an event id before every event: follow an empty history
HEADERS = ["TIME", "KIND", "NODE", "MESSAGE"]


def rows(events: list[dict]) -> list[list]:
    return [[clock(e.get("time")), e.get("kind"), e.get("node") or e.get("app") or "-", e.get("message")]
            for e in events]


@click.command("events")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events as they happen (Ctrl-C stops).")
@click.option("--limit", "-n", default=50, show_default=True, help="How many recent events to show first.")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts (one object per line with --follow).")
@api_errors
def events(follow: bool, limit: int, as_json: bool) -> None:
    """Show the cluster's recent events, oldest first."""
    client = Client.from_config()
    answer = client.get("/v1/events", limit=limit)
    if as_json and not follow:
        print_json(answer["events"])
        return
    show(answer["events"], as_json, header=True)
    if follow:
        try:
            follow_events(client, answer.get("last"), as_json)
        except KeyboardInterrupt:
            pass


def show(found: list[dict], as_json: bool, header: bool = False) -> None:
    if as_json:
        for event in found:
            click.echo(json.dumps(event, sort_keys=True))
        return
    if found:
        text = table(HEADERS, rows(found))
        click.echo(text if header else text.split("\n", 1)[1])


def follow_events(client: Client, last: str | None, as_json: bool) -> None:
    last = last or BEGINNING
    while True:
        params = {"after": last, "wait": LONG_POLL, "limit": 200}
        answer = client.request("GET", "/v1/events", params=params, timeout=LONG_POLL + 15)
        show(answer["events"], as_json)
        last = answer.get("last") or last
