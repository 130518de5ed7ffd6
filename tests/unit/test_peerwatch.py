"""Machines watching each other (vcapp/state/peerwatch.py), the pure parts: when one observer
suspects a peer, and when the cluster takes a peer as unreachable."""

from vcapp.state import peerwatch
from vcapp.state.peerwatch import Tracker, confirmed


def test_a_silent_peer_becomes_a_suspect_after_two_misses_and_the_silence():
    t = Tracker()
    t.peers({"home-2", "office-1"}, now=0.0)
    t.observe("home-2", False, 0.5)
    t.observe("home-2", False, 1.0)
    assert t.suspects() == {}  # two misses, but heard 1 s ago
    t.observe("home-2", False, peerwatch.SILENCE_S)
    assert t.suspects() == {"home-2": peerwatch.SILENCE_S}
    t.observe("office-1", True, 1.6)
    assert set(t.suspects()) == {"home-2"}
    t.observe("home-2", True, 2.0)  # it answers again: no longer a suspect
    assert t.suspects() == {}


def test_one_late_answer_between_misses_starts_the_count_again():
    t = Tracker()
    t.peers({"home-2"}, now=0.0)
    for at, answered in ((1.0, False), (2.0, True), (3.0, False)):
        t.observe("home-2", answered, at)
    assert t.suspects() == {}


def test_a_machine_that_left_is_forgotten():
    t = Tracker()
    t.peers({"home-2"}, now=0.0)
    for at in (1.0, 2.0):
        t.observe("home-2", False, at)
    t.peers(set(), now=2.5)
    assert t.suspects() == {}
    t.observe("home-2", False, 3.0)  # a late probe of a machine no longer watched
    assert t.suspects() == {}


def test_one_observer_is_not_enough_in_a_cluster_of_three():
    alive = {"home-1", "home-2", "office-1"}
    assert confirmed(alive, {"home-1": {"office-1": 1.0}}) == {}
    assert confirmed(alive, {"home-1": {"office-1": 1.0}, "home-2": {"office-1": 2.0}}) == \
        {"office-1": ["home-1", "home-2"]}


def test_an_isolated_observer_that_suspects_everyone_confirms_nobody_but_itself():
    alive = {"home-1", "home-2", "office-1"}
    reports = {"office-1": {"home-1": 1.0, "home-2": 1.0}, "home-1": {"office-1": 1.0},
               "home-2": {"office-1": 1.0}}
    assert confirmed(alive, reports) == {"office-1": ["home-1", "home-2"]}


def test_two_machines_trust_each_other_and_dead_observers_do_not_count():
    assert confirmed({"home-1", "home-2"}, {"home-1": {"home-2": 1.0}}) == {"home-2": ["home-1"]}
    assert confirmed({"home-1"}, {"home-2": {"home-1": 1.0}}) == {}
    assert confirmed({"a", "b", "c"}, {"a": {"c": 1.0}, "x": {"c": 1.0}}) == {}
