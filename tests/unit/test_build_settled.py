"""A build record left "building" by a push that cannot be running any more reads as
"interrupted" (vcapp/state/builds.py `settled`), so `vcapp builds` never shows a push in progress
for ever."""

import pytest

from vcapp.state.builds import BUILDING, INTERRUPTED, MAX_PUSH_S, settled

pytestmark = pytest.mark.unit

RECORD = {"number": 3, "result": BUILDING, "receiver": "home-2", "started": 1000.0, "ended": None}


def test_a_push_whose_receiver_is_gone_was_interrupted():
    shown = settled(RECORD, {"home-1"}, 1010.0)
    assert shown["result"] == INTERRUPTED
    assert shown["reason"] == "home-2, which took the push, went down before it ended; push again to build it"
    assert RECORD["result"] == BUILDING  # the stored record is not changed by reading it


def test_a_push_running_longer_than_any_push_runs_was_interrupted():
    assert settled(RECORD, {"home-2"}, 1000.0 + MAX_PUSH_S - 1)["result"] == BUILDING
    late = settled(RECORD, {"home-2"}, 1000.0 + MAX_PUSH_S + 1)
    assert late["result"] == INTERRUPTED and "no end was recorded within 3600 s" in late["reason"]


def test_finished_builds_read_as_written():
    done = dict(RECORD, result="failed", reason="exit 1")
    assert settled(done, set(), 10**9) is done
