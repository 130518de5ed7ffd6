"""What the admin commands share: turning failures into exit 1 with a message, aligned
tables for people, JSON for scripts, and human forms of times and sizes."""

from __future__ import annotations

import functools
import json
import time
from typing import Any, Callable, Iterable, TypeVar

import click

from vcapp.cli.client import ClientError
from vcapp.errors import VcError

F = TypeVar("F", bound=Callable)


def api_errors(command: F) -> F:
    """Failures from the API or from local validation: message on stderr, exit status 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (ClientError, VcError) as e:
            raise click.ClickException(e.message) from None

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def table(headers: list[str], rows: Iterable[list[Any]]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    cells = [headers] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1] if len(row) > 1
             else row[0] for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def ago(when: float | None, now: float | None = None) -> str:
    """'2s ago', '5m ago', 'never'; `now` is the server's clock when known (no skew)."""
    if not when:
        return "never"
    delta = max(0.0, (now or time.time()) - when)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"{int(delta // size)}{unit} ago"
    return f"{int(delta)}s ago"


def until(when: float | None, now: float | None = None) -> str:
    if not when:
        return "never"
    delta = when - (now or time.time())
    if delta <= 0:
        return "expired"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"in {int(delta // size)}{unit}"
    return f"in {int(delta)}s"


def size_mb(mb: float | None) -> str:
    """Megabytes as a person reads them: 512M, 7.8G, 1.2T."""
    if mb is None:
        return "-"
    if mb >= 1024 * 1024:
        return f"{mb / 1024 / 1024:.1f}T"
    if mb >= 1024:
        return f"{mb / 1024:.1f}G"
    return f"{int(mb)}M"


def used_total(total: float | None, free: float | None) -> str:
    if total is None:
        return "-"
    used = total - free if free is not None else None
    return f"{size_mb(used)}/{size_mb(total)}"


def clock(when: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) if when else "-"
