"""`vcapp nodes`: the machines of the cluster, up or down, with their resources."""

from __future__ import annotations

import click

from vcapp.cli.client import Client
from vcapp.cli.output import ago, api_errors, print_json, table, used_total

HEADERS = ["NAME", "SITE", "STATE", "ADDR", "CPUS", "MEM", "DISK", "VERSION", "LAST SEEN"]
SHORT_BUILD = 7


def version_text(node: dict) -> str:
    """"0.1.0+84b3173": the release and the start of the build (vcapp/version.py); machines
    mid-upgrade differ in it."""
    build = (node.get("build") or "")[:SHORT_BUILD]
    return f"{node.get('version') or '?'}{'+' + build if build else ''}"


def state_text(node: dict) -> str:
    drained = ", drained with storage" if node.get("storage_drained") else ", drained" if node.get("drained") else ""
    return ("up" if node.get("up") else "down") + drained


def node_rows(nodes: list[dict], now: float | None) -> list[list]:
    return [[n.get("name"), n.get("site"), state_text(n),
             n.get("addr"),
             n.get("cpus", "-"), used_total(n.get("memory_mb"), n.get("free_memory_mb")),
             used_total(n.get("disk_mb"), n.get("free_disk_mb")), version_text(n), ago(n.get("last_seen"), now)]
            for n in sorted(nodes, key=lambda n: n.get("name", ""))]


def node_table(nodes: list[dict], now: float | None) -> str:
    return table(HEADERS, node_rows(nodes, now))


@click.command("nodes")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@api_errors
def nodes(as_json: bool) -> None:
    """List the machines: site, up/down, address, CPUs, memory and disk (used/total), the vcapp
    each runs, last seen."""
    answer = Client.from_config().get("/v1/nodes")
    if as_json:
        print_json(answer["nodes"])
        return
    click.echo(node_table(answer["nodes"], answer.get("now")) if answer["nodes"] else "no machines")
