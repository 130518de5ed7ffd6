"""`vcapp status`: the cluster at a glance, its machines and the counts to check first."""

from __future__ import annotations

import click

from vcapp.cli.client import Client
from vcapp.cli.nodes import node_table
from vcapp.cli.output import api_errors, print_json, used_total
from vcapp.cli.warnings import history_table, warning_lines


def header(answer: dict) -> list[str]:
    cluster, count = answer["cluster"], answer["summary"]
    sites = ", ".join(f"{site} {c['up']}/{c['up'] + c['down']} up" for site, c in sorted(count["sites"].items()))
    return [
        f"cluster   {cluster['name']} ({cluster['id']})",
        f"domain    {cluster.get('domain') or '-'}   edge {cluster.get('edge') or '-'}",
        f"machines  {count['nodes']} of at most {cluster.get('max_nodes') or 10}: "
        f"{count['up']} up, {count['down']} down" + (f" ({sites})" if sites else ""),
        f"capacity  {count['cpus']} cpus, memory {used_total(count['memory_mb'], count['free_memory_mb'])}, "
        f"disk {used_total(count['disk_mb'], count['free_disk_mb'])} (used/total, machines up)",
        storage_line(answer.get("storage") or {}),
        f"api       served by {answer.get('served_by')}, you are {answer.get('admin')!r}",
    ]


def storage_line(st: dict) -> str:
    copies = {"healthy": "3 copies of app data", "degraded": "DEGRADED: 2 copies until a machine returns",
              "off": "off until the first `vcapp volumes create`", "starting": "starting"}
    line = f"storage   {copies.get(st.get('state'), st.get('state') or '-')}, {st.get('volumes', 0)} volume(s)"
    moving = "; ".join(f"{name}'s data moving off ({count} volume(s) left)"
                       for name, count in sorted((st.get("evacuating") or {}).items()))
    moved = ", ".join(st.get("evacuated") or [])
    return (line + (f"; {moving}" if moving else "") + (f"; no data on {moved} (storage drained)" if moved else "")
            + storage_why(st))


def storage_why(st: dict) -> str:
    """Why app data is not healthy: the machines its copies count on, and the last failed pass."""
    if st.get("state") != "degraded":
        return ""
    counted = f"; copies on {', '.join(st['counted'])}" if st.get("counted") else ""
    return counted + (f"; the last try to restore them failed: {st['error']}" if st.get("error") else "")


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--history", is_flag=True, help="Add each machine's and app's last hour, uptime and failovers.")
@api_errors
def status(as_json: bool, history: bool) -> None:
    """The cluster, its machines up and down with their resources, summary counts and warnings."""
    client = Client.from_config()
    answer = client.get("/v1/status")
    if as_json:
        print_json(answer)
        return
    click.echo("\n".join(header(answer)))
    click.echo("")
    click.echo(node_table(answer["nodes"], answer.get("now")) if answer["nodes"] else "no machines")
    click.echo("\n" + "\n".join(warning_lines(client)))
    if history:
        click.echo("\n" + history_table(client))
