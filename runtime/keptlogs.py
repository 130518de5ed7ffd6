"""Output of containers that are gone, kept on their machine for a while (`vcapp logs` shows it
before the running instances' lines): a replaced release, a retired or moved instance, a
new release refused at its health check (the lines that say why).

One file a container, written when the runtime removes it:
    <root>/<app>/<ended unix seconds>--<instance>--<release>--<container>.log
holding its last KEEP_LINES lines. Files older than KEEP_S go, and each app keeps its
KEEP_FILES newest, so the space is bounded on every machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

KEEP_S = 24 * 3600
KEEP_FILES = 50  # per app, on each machine
KEEP_LINES = 2000  # per container
SEP = "--"


@dataclass(frozen=True)
class Kept:
    path: Path
    app: str
    instance: str
    release: str
    ended: float


def save(root: Path, app: str, instance: str, release: str, container: str, lines: Iterable[str],
         now: float | None = None) -> Path:
    """Keep a container's last lines; prunes the app's old files."""
    now = time.time() if now is None else now
    folder = root / app
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    last: list[str] = []
    for line in lines:
        last.append(line)
        if len(last) > 2 * KEEP_LINES:
            del last[:-KEEP_LINES]
    path = folder / f"{now:.3f}{SEP}{instance}{SEP}{release}{SEP}{container}.log"
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{line}\n" for line in last[-KEEP_LINES:]), errors="replace")
    tmp.replace(path)
    prune(root, app, now)
    return path


def prune(root: Path, app: str, now: float) -> None:
    kept = listing(root, app)
    for k in kept[:-KEEP_FILES] + [k for k in kept[-KEEP_FILES:] if now - k.ended > KEEP_S]:
        k.path.unlink(missing_ok=True)


def listing(root: Path, app: str, instance: str | None = None, since: float | None = None) -> list[Kept]:
    """The app's kept logs here, oldest first: of one instance, ended after `since`, if asked."""
    found = []
    for path in (root / app).glob("*.log") if (root / app).is_dir() else ():
        parts = path.name[:-len(".log")].split(SEP, 3)
        if len(parts) != 4:
            continue
        try:
            ended = float(parts[0])
        except ValueError:
            continue
        k = Kept(path, app, parts[1], parts[2], ended)
        if (instance is None or k.instance == instance) and (since is None or k.ended >= since):
            found.append(k)
    return sorted(found, key=lambda k: k.ended)


def lines(kept: Kept, tail: int | None = None) -> list[str]:
    try:
        text = kept.path.read_text(errors="replace").splitlines()
    except FileNotFoundError:  # pruned meanwhile
        return []
    return text[-tail:] if tail else text
