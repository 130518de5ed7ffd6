"""Procfile parsing: `name: command` lines, as on Heroku; `web` is the process we serve,
`release` runs once per release before it serves, every other line is a process type that
runs without HTTP (worker, clock, ...).

    # comment
    web: gunicorn app:app --bind 0.0.0.0:$PORT
    worker: python worker.py
"""

from __future__ import annotations

import re
from pathlib import Path

PROCFILE = "Procfile"
LINE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.+?)\s*$")


class ProcfileError(ValueError):
    """A Procfile line that is neither a comment nor `name: command`."""


def parse(text: str) -> dict[str, str]:
    """Process types of a Procfile, in file order; raises ProcfileError on a bad line."""
    processes: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = LINE.match(line)
        if not match:
            raise ProcfileError(
                f"Procfile line {number} is not `name: command`: {raw.strip()!r}; "
                "write it as `web: <command that serves on $PORT>`"
            )
        processes[match.group(1)] = match.group(2)
    return processes


def web_command(tree: Path) -> str | None:
    """The `web:` command of the tree's Procfile, or None when there is no Procfile or no web line."""
    path = tree / PROCFILE
    if not path.is_file():
        return None
    return parse(path.read_text(errors="replace")).get("web")


def processes(tree: Path) -> dict[str, str]:
    """Every line of the tree's Procfile (type -> command), {} without one; ProcfileError on a bad line."""
    path = tree / PROCFILE
    if not path.is_file():
        return {}
    return parse(path.read_text(errors="replace"))
