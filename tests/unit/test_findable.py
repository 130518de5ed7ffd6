"""When the runtime lets an app read its volume: storage/findable.py's reading of SeaweedFS's
answers (shapes as a volume server's /status and a master's /dir/lookup give them)."""

from __future__ import annotations

import json
import subprocess

import pytest

from storage import findable
from storage.host import StorageError
from storage.plan import Machine, plan_cluster

STATUS = {"Version": "8000GB 4.48", "Volumes": [
    {"Id": 3, "Collection": "vol_notes_data", "Size": 4096, "ReplicaPlacement": {"node": 2}},
    {"Id": 4, "Collection": "vol_notes_data", "Size": 0},
    {"Id": 7, "Collection": "vol_blog_data", "Size": 10},
]}
FOUND = {"volumeOrFileId": "3", "locations": [{"url": "100.96.0.12:8080", "publicUrl": "100.96.0.12:8080"}]}
NOT_FOUND = {"volumeOrFileId": "3", "error": "volume id 3 not found"}
PLAN = plan_cluster([Machine("home-1", "home", "100.96.0.11"), Machine("home-2", "home", "100.96.0.12"),
                     Machine("home-3", "home", "100.96.0.13")], ["100.96.0.11:2379"], "/vc/seaweedfs")


class Answers:
    """A machine whose SeaweedFS answers from a script: url fragment -> (status, body) list,
    one entry per call, the last repeated."""

    name = "home-2"

    def __init__(self, script: dict[str, list[tuple[int, object]]]):
        self.script = script
        self.asked: list[str] = []

    def run(self, argv, *, input=None, timeout=60):
        url = argv[-1]
        self.asked.append(url)
        for fragment, answers in self.script.items():
            if fragment in url:
                code, body = answers.pop(0) if len(answers) > 1 else answers[0]
                if code == 0:
                    return subprocess.CompletedProcess(argv, 28, "", "timed out")
                return subprocess.CompletedProcess(argv, 0, f"{json.dumps(body)}\n{code}", "")
        return subprocess.CompletedProcess(argv, 7, "", "connection refused")

    def spawn(self, argv, cwd, log):  # pragma: no cover - never starts anything
        raise AssertionError(argv)


def test_only_the_apps_collection_counts():
    assert findable.held_ids(STATUS, "vol_notes_data") == {3, 4}
    assert findable.held_ids(STATUS, "vol_other_data") == set()
    assert findable.held_ids({"Volumes": None}, "vol_notes_data") == set()


def test_a_lookup_without_locations_is_not_found():
    assert findable.located(FOUND)
    assert not findable.located(NOT_FOUND)
    assert not findable.located(None)


def test_a_new_leader_that_has_not_heard_the_volume_servers_holds_the_start_back():
    host = Answers({":8080/status": [(200, STATUS)],
                    "/dir/lookup": [(404, NOT_FOUND), (404, NOT_FOUND), (503, NOT_FOUND), (200, FOUND)]})
    findable.wait_findable(PLAN, host, "vol_notes_data", ["home-2", "home-3"], timeout=10)
    looked = [u for u in host.asked if "/dir/lookup" in u]
    assert len(looked) >= 4 and "volumeId=3" in looked[0]


def test_a_dead_machines_volume_server_is_not_waited_for():
    host = Answers({"100.96.0.12:8080/status": [(200, {"Volumes": []})],
                    "100.96.0.13:8080/status": [(0, None)], "/dir/lookup": [(404, NOT_FOUND)]})
    findable.wait_findable(PLAN, host, "vol_notes_data", ["home-2", "home-3"], timeout=1)


def test_data_no_master_can_find_is_refused_with_the_volume_named():
    host = Answers({":8080/status": [(200, STATUS)], "/dir/lookup": [(404, NOT_FOUND)]})
    with pytest.raises(StorageError, match=r"vol_notes_data is not readable yet.*volume\(s\) 3, 4"):
        findable.wait_findable(PLAN, host, "vol_notes_data", ["home-2"], timeout=0.6)
