"""What gunicorn serves on each machine: the admin API over this machine's node.json.

    gunicorn -k gthread --threads 8 -w 1 -b ADDR:PORT vcapp.api.wsgi:app

Threads, not processes: one process keeps the footprint small, and a git push streaming its
build log, or an `events --follow` long poll, holds a thread, not a whole worker.
"""

from __future__ import annotations

import sys

from vcapp.api.app import ApiConfig, create_app

THREADS = 8
# A long poll waits up to 25 s; gunicorn's graceful stop should not cut a normal request.
GRACEFUL_TIMEOUT = 10


def gunicorn_command(bind: list[str]) -> list[str]:
    """The argv that starts the API server on each `ADDR:PORT` in `bind`."""
    if not bind:
        raise ValueError("gunicorn_command needs at least one ADDR:PORT to bind")
    binds = [arg for addr in bind for arg in ("-b", addr)]
    return [sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", str(THREADS), "-w", "1",
            "--graceful-timeout", str(GRACEFUL_TIMEOUT), "--worker-tmp-dir", "/dev/shm",
            *binds, "vcapp.api.wsgi:app"]


def __getattr__(name: str):
    """`app` is built when gunicorn asks for it, so importing gunicorn_command reads no node.json."""
    if name == "app":
        return create_app(ApiConfig.from_node_config())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
