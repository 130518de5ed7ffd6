"""Where scheduled backups are kept (vcapp/state/backups.py): a directory of the controller's
machine, or a bucket on an S3 service (a prefix in it). The same three acts for both: what is
there (backup name -> when it was made), keep a new one, delete one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from storage import external
from storage.host import StorageError
from vcapp.errors import Unavailable
from vcapp.state import backups


def describe(schedule: dict) -> str:
    s3 = schedule.get("s3")
    return f"s3://{s3['bucket']}/{s3['prefix']} at {s3['endpoint']}" if s3 else schedule["dir"]


def held(schedule: dict, cluster: str) -> dict[str, float]:
    """This cluster's backups at the target and when each was made (their names say)."""
    if schedule.get("s3"):
        names = _s3(lambda svc, s3: list(external.list_files(svc, s3["bucket"], s3["prefix"])), schedule)
    else:
        where = Path(schedule["dir"])
        names = [p.name for p in where.iterdir() if p.is_file()] if where.is_dir() else []
    return {n: at for n in names if n.startswith(f"vcapp-backup-{cluster}-") and (at := backups.made_at(n)) is not None}


def keep(schedule: dict, path: Path) -> None:
    """Put the finished backup file `path` at the target (moved into the directory, or
    uploaded and then removed here)."""
    if schedule.get("s3"):
        _s3(lambda svc, s3: external.put_file(svc, s3["bucket"], s3["prefix"] + path.name, str(path)), schedule)
        path.unlink(missing_ok=True)
        return
    where = Path(schedule["dir"])
    where.mkdir(parents=True, exist_ok=True)
    part = where / f".{path.name}.part"
    shutil.move(path, part)  # another filesystem (a NAS mount): copied whole before the name appears
    part.rename(where / path.name)


def delete(schedule: dict, name: str) -> None:
    if schedule.get("s3"):
        _s3(lambda svc, s3: external.delete_file(svc, s3["bucket"], s3["prefix"] + name), schedule)
    else:
        (Path(schedule["dir"]) / name).unlink(missing_ok=True)


def _s3(act, schedule: dict):
    try:
        return act(backups.service(schedule), schedule["s3"])
    except StorageError as e:
        raise Unavailable(f"the backup bucket: {e}") from None
