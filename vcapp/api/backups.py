"""Backups, made by the machine that takes the request (vcapp/deploy/backup.py).

    POST /v1/backups   {"recipient": "age1..."}: write a backup encrypted to that key and
                       send it back. The answer is the streamed protocol of
                       vcapp/api/streamed.py (progress lines, empty keep-alive lines, then
                       "=> {name, bytes, manifest}" or "!! why"), and after the result line
                       the backup's bytes, exactly `bytes` of them. The machine keeps no copy.

    GET    /v1/backups            {"schedule": ..., "last": the last scheduled run's outcome}
    PUT    /v1/backups/schedule   {"every": "12h", "keep": 5, "recipient": "age1...", "dir": "/mnt/nas"}
    DELETE /v1/backups/schedule   no more scheduled backups (the files made stay)

One backup at a time per machine: a second request while one runs is refused (409), as two
would double the disk and the load for nothing.
"""

from __future__ import annotations

import json
import queue
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from flask import Blueprint, Response, g, jsonify

from vcapp import machine
from vcapp.api import context
from vcapp.api.body import json_body
from vcapp.deploy import backup, remote_build
from vcapp.errors import Conflict, VcError
from vcapp.machine import NodeConfig
from vcapp.state import backups, events

bp = Blueprint("backups", __name__)
CHUNK = 1 << 20
_running = threading.Lock()


@bp.post("/v1/backups")
def create_backup():
    """Write a backup of the cluster encrypted to the given age public key, and send it."""
    recipient = backups.check_recipient(str(json_body().get("recipient") or ""))
    if not _running.acquire(blocking=False):
        raise Conflict("a backup is being written on this machine already; wait for it to end")
    store, cfg, who = context.store(), NodeConfig.load(), g.admin
    try:
        work = Path(tempfile.mkdtemp(prefix="vcapp-backup-out-", dir=machine.data_dir()))
    except OSError:
        _running.release()
        raise
    lines: queue.Queue = queue.Queue()

    def run() -> None:
        try:
            path, made = backup.create(store, cfg, recipient, work, lambda line: lines.put(remote_build.escape(line)))
            result = {"name": path.name, "bytes": path.stat().st_size, "manifest": made.to_dict()}
            events.record(store, "backup", f"backup {path.name} ({result['bytes'] / 1e6:.1f} MB) made on {cfg.name} "
                          f"for {who}, encrypted to {recipient[:16]}...", by=who)
            lines.put(remote_build.RESULT + json.dumps(result))
            lines.put(path)
        except VcError as e:
            lines.put(remote_build.FAILURE + e.message)
        except Exception as e:  # the caller must hear why
            lines.put(remote_build.FAILURE + f"internal error on {cfg.name}: {type(e).__name__}: {e}")
        finally:
            lines.put(None)

    def stream() -> Iterator[bytes]:
        try:
            while True:
                try:
                    item = lines.get(timeout=remote_build.KEEPALIVE_S)
                except queue.Empty:
                    yield b"\n"
                    continue
                if item is None:
                    return
                if isinstance(item, Path):
                    with open(item, "rb") as f:
                        while chunk := f.read(CHUNK):
                            yield chunk
                    continue
                yield (item.replace("\n", " ") + "\n").encode()
        finally:
            shutil.rmtree(work, ignore_errors=True)
            _running.release()

    threading.Thread(target=run, name="vcapp-backup", daemon=True).start()
    return Response(stream(), mimetype="application/octet-stream")


@bp.get("/v1/backups")
def backup_status():
    """The backup schedule and the outcome of its last run."""
    store = context.store()
    return jsonify({"schedule": backups.public(backups.schedule(store)), "last": backups.status(store)})


@bp.put("/v1/backups/schedule")
def set_schedule():
    """Back the cluster up on a schedule, into a directory of the controller's machine."""
    return jsonify(backups.set_schedule(context.store(), json_body(), who=g.admin))


@bp.delete("/v1/backups/schedule")
def clear_schedule():
    """Stop the scheduled backups; the files already made stay where they are."""
    return jsonify({"cleared": backups.clear_schedule(context.store())})
