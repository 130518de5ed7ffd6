"""Backups, made by the machine that takes the request (vcapp/deploy/backup.py).

    POST /v1/backups   {"recipient": "age1..."}: write a backup encrypted to that key and
                       send it back. The answer is the streamed protocol of
                       vcapp/api/streamed.py (progress lines, empty keep-alive lines, then
                       "=> {name, bytes, manifest}" or "!! why"), and after the result line
                       the backup's bytes, exactly `bytes` of them. The machine keeps no copy.

    GET    /v1/backups            {"schedule": ..., "last": the last scheduled run's outcome}
    PUT    /v1/backups/schedule   {"every": "12h", "keep": 5, "recipient": "age1...", and "dir": "/mnt/nas"
                                  or "s3": {endpoint, bucket, prefix, region?, access_key, secret_key}}
    DELETE /v1/backups/schedule   no more scheduled backups (the files made stay)

One backup at a time per machine: a second request while one runs is refused (409), as two
would double the disk and the load for nothing.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from flask import Blueprint, g, jsonify

from vcapp import machine
from vcapp.api import context, streamed
from vcapp.api.body import json_body
from vcapp.deploy import backup
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
        out = Path(tempfile.mkdtemp(prefix="vcapp-backup-out-", dir=machine.data_dir()))
    except OSError:
        _running.release()
        raise
    made: list[Path] = []

    def work(log) -> dict:
        path, manifest = backup.create(store, cfg, recipient, out, log)
        made.append(path)
        size = path.stat().st_size
        events.record(store, "backup", f"backup {path.name} ({size / 1e6:.1f} MB) made on {cfg.name} for {who}, "
                      f"encrypted to {recipient[:16]}...", by=who)
        return {"name": path.name, "bytes": size, "manifest": manifest.to_dict()}

    def send() -> Iterator[bytes]:
        with open(made[0], "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def cleanup() -> None:
        shutil.rmtree(out, ignore_errors=True)
        _running.release()

    return streamed.respond("vcapp-backup", work, (VcError,), cfg.name, cleanup=cleanup, then=send)


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
