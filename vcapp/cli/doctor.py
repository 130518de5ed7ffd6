"""`vcapp doctor`: this machine's readiness for vcapp, and once joined its link to the cluster."""

from __future__ import annotations

import sys

import click

from vcapp.cli.output import print_json
from vcapp.machine import data_dir
from vcapp.node import doctor as checks_of

MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "-   "}


def report(checks: list[checks_of.Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{MARKS[c.status]}  {c.name:<{width}}  {c.detail}")
        if c.fix and c.status in ("warn", "fail"):
            lines.append(f"      {'':<{width}}  -> {c.fix}")
    fails = sum(c.status == "fail" for c in checks)
    lines.append("")
    lines.append(f"{fails} problem(s) to fix before vcapp can work here" if fails else
                 "this machine can run vcapp" + (" (see the warnings)" if any(c.status == "warn" for c in checks) else ""))
    return "\n".join(lines)


@click.command("doctor")
@click.option("--edge", default=None, metavar="URL",
              help="Before joining: the edge's coordination URL (e.g. http://edge.example.com:8443/_mesh), "
                   "to learn whether UDP gets out to it.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def doctor(edge: str | None, as_json: bool) -> None:
    """Check this machine: kernel, cgroups, podman with runc, the tools and devices vcapp needs,
    disk space; once it has joined, the node daemon, clock skew against the other machines, the
    edge and UDP out to it. Exits 1 when a check fails."""
    found = checks_of.run(data_dir(), edge)
    if as_json:
        print_json(checks_of.as_json(found))
    else:
        click.echo(report(found))
    sys.exit(0 if checks_of.healthy(found) else 1)
