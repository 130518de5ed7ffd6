"""What `vcapp status` adds from the health routes: warnings, and with --history a table of
each machine's and app's last hour and uptime (GET /v1/warnings, GET /v1/history)."""

from __future__ import annotations

from vcapp.cli.client import Client, ClientError
from vcapp.cli.output import table


def warning_lines(client: Client) -> list[str]:
    """One line per current warning; empty for an API without the health routes."""
    try:
        found = client.get("/v1/warnings")["warnings"]
    except ClientError as e:
        if e.status == 404:
            return []
        raise
    if not found:
        return ["warnings  none"]
    return [f"warnings  {len(found)}"] + [f"  {w.get('severity', 'warning'):7} {w['message']}" for w in found]


def _num(value, unit: str = "") -> str:
    return "-" if value is None else f"{value:g}{unit}"


def history_table(client: Client) -> str:
    """Per machine and app: last-hour means, uptime over 24 h / 7 d, failovers."""
    subjects = client.get("/v1/history")["subjects"]
    rows = []
    for subject, s in subjects.items():
        kind, name = subject.split("/", 1)
        hour = s.get("hour", {})
        if kind == "node":
            usage = f"cpu {_num(hour.get('cpu'), '%')} mem {_num(hour.get('mem'), '%')} disk {_num(hour.get('disk'), '%')}"
            failovers = "-"
        else:
            usage = f"cpu {_num(hour.get('cpu'), '%')} mem {_num(hour.get('mem_mb'), 'MB')} " \
                    f"restarts {_num(s.get('latest', {}).get('restarts'))}"
            failovers = f"{s.get('failovers_24h', 0)} / {s.get('failovers_7d', 0)}"
        rows.append([kind, name, usage, f"{_num(s.get('uptime_24h'), '%')} / {_num(s.get('uptime_7d'), '%')}",
                     failovers])
    if not rows:
        return "no history yet: the controller samples machines and apps every 10 s"
    return table(["KIND", "NAME", "LAST HOUR (MEAN)", "UPTIME 24H / 7D", "FAILOVERS 24H / 7D"], rows)
