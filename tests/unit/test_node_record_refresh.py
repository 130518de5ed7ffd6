"""A machine rewrites its record only when what it measures moved enough, or once a minute
(vcapp/node/resources.py worth_writing): each write is an etcd revision every machine's next
tick reads the cluster afresh for."""

from __future__ import annotations

from vcapp.node import resources

OLD = {"name": "home-2", "labels": {"gpu": "yes"}, "cpus": 2, "load1": 0.4, "free_cpus": 1.6, "memory_mb": 24000,
       "free_memory_mb": 20000, "disk_mb": 200000, "free_disk_mb": 80000, "version": "0.1.0", "build": "abc",
       "etcd_member": True, "updated_at": 1000.0}


def fresh(**changes) -> dict:
    return dict(OLD, updated_at=1010.0, **changes)


def test_noise_in_the_measures_is_not_written():
    assert not resources.worth_writing(OLD, fresh(load1=0.5, free_cpus=1.5, free_memory_mb=19900,
                                                 free_disk_mb=79500), 1010.0)


def test_a_measure_that_moved_by_a_share_of_its_total_is_written():
    assert resources.worth_writing(OLD, fresh(load1=0.7), 1010.0)  # 0.3 of 2 cpus: 15 %
    assert resources.worth_writing(OLD, fresh(free_memory_mb=19000), 1010.0)  # 1000 of 24000 MB
    assert resources.worth_writing(OLD, fresh(free_disk_mb=78000), 1010.0)  # 2000 of 200000 MB


def test_any_other_change_is_written_at_once():
    assert resources.worth_writing(OLD, fresh(version="0.2.0"), 1010.0)  # an upgrade shows its version
    assert resources.worth_writing(OLD, fresh(etcd_member=False), 1010.0)
    assert resources.worth_writing(OLD, fresh(cpus=4), 1010.0)
    assert resources.worth_writing({k: v for k, v in OLD.items() if k != "build"}, fresh(), 1010.0)


def test_a_record_a_minute_old_is_written_even_unchanged():
    assert not resources.worth_writing(OLD, fresh(), 1000.0 + resources.REWRITE_AFTER_S - 1)
    assert resources.worth_writing(OLD, fresh(), 1000.0 + resources.REWRITE_AFTER_S)
    assert resources.worth_writing({k: v for k, v in OLD.items() if k != "updated_at"}, fresh(), 1010.0)


def test_a_record_with_a_measure_missing_or_odd_is_written():
    assert resources.worth_writing({k: v for k, v in OLD.items() if k != "free_disk_mb"}, fresh(), 1010.0)
    assert resources.worth_writing(dict(OLD, load1=None), fresh(), 1010.0)
