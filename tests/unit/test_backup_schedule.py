"""The backup schedule's rules: when the controller makes a backup, which ones it deletes,
and what a schedule request may say."""

from __future__ import annotations

import pytest

from vcapp.errors import BadRequest
from vcapp.node.backup_loop import Plan, plan
from vcapp.state import backups

HOUR = 3600.0
SCHEDULE = {"every_s": 12 * HOUR, "keep": 3}
KEY = "age1" + "q" * 58


def test_the_first_backup_is_made_at_once_and_the_next_when_the_newest_is_old_enough():
    assert plan(SCHEDULE, {}, 1000.0) == Plan(make=True)
    held = {"a": 0.0, "b": 10 * HOUR}
    assert plan(SCHEDULE, held, 21 * HOUR) == Plan()  # the newest is 11 h old
    assert plan(SCHEDULE, held, 22 * HOUR) == Plan(make=True)


def test_the_oldest_beyond_keep_go_only_once_a_new_one_exists():
    held = {f"b{i}": i * HOUR for i in range(5)}
    assert plan(SCHEDULE, held, 100 * HOUR) == Plan(make=True)  # a failed run must not cost a backup
    assert plan(SCHEDULE, held, 5 * HOUR) == Plan(delete=["b1", "b0"])
    assert plan({**SCHEDULE, "keep": 1}, {"only": 0.0}, HOUR) == Plan()


def test_backup_names_say_when_they_were_made_and_other_files_are_not_backups():
    assert backups.made_at("vcapp-backup-acme-20261204T120000Z.tar.age") == 1796385600.0
    for other in ("notes.txt", "vcapp-backup-acme-20261204T120000Z.tar.age.part", "vcapp-backup-acme-2026.tar.age"):
        assert backups.made_at(other) is None


def test_a_schedule_takes_periods_and_refuses_what_makes_no_sense():
    got = backups.check_schedule({"every": "1d", "keep": 7, "recipient": KEY, "dir": "/mnt/nas/backups/"})
    assert got == {"every_s": 86400, "keep": 7, "recipient": KEY, "dir": "/mnt/nas/backups"}
    assert backups.check_schedule({"recipient": KEY, "dir": "/b"})["every_s"] == 12 * HOUR  # k3s's default
    for bad, says in [({"every": "5m"}, "between 1h"), ({"every": "often"}, "not a period"), ({"keep": 0}, "keep"),
                      ({"keep": True}, "keep"), ({"dir": "backups"}, "absolute"), ({"dir": "/b\n/c"}, "absolute"),
                      ({"recipient": "age1short"}, "age-keygen"), ({"every": 10**12}, "between")]:
        with pytest.raises(BadRequest) as e:
            backups.check_schedule({"recipient": KEY, "dir": "/b", **bad})
        assert says in str(e.value), (bad, str(e.value))
