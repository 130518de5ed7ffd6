"""Pure logic of the control plane: token formats and checks, the etcd membership plan."""

import time

import pytest

from vcapp import tokens
from vcapp.errors import Unauthorized
from vcapp.state.etcd_members import MemberView, NodeView, members_target, plan_members, voters_target
from vcapp.state.membership import check_join_token

pytestmark = pytest.mark.unit


def test_tokens_round_trip_and_hash_only():
    join = tokens.new_join_token("acme", ["http://10.1.0.11:7180"])
    assert tokens.parse_join_token(str(join)) == join
    admin = tokens.new_admin_token()
    assert tokens.parse_admin_token(str(admin)) == admin
    assert tokens.secret_matches(admin.secret, tokens.hash_secret(admin.secret))
    assert admin.secret not in tokens.hash_secret(admin.secret)


@pytest.mark.parametrize("text", ["", "vcadm_", "vcadm_zz_abc", "vcjoin_abc", str(tokens.new_admin_token()) + "x"],
                         ids=["empty", "prefix-only", "bad-id", "join-prefix", "secret-too-long"])
def test_malformed_tokens_are_refused_with_what_to_do(text):
    with pytest.raises(tokens.TokenError, match="vcapp tokens"):
        tokens.parse_admin_token(text) if text.startswith("vcadm") or not text else tokens.parse_join_token(text)


def _record(token, **over):
    return {"hash": tokens.hash_secret(token.secret), "revoked": False, "expires_at": None,
            "uses": 0, "max_uses": 0, **over}


@pytest.mark.parametrize("over,message", [
    ({"revoked": True}, "revoked"),
    ({"expires_at": 1.0}, "expired at 1970-01-01"),
    ({"uses": 2, "max_uses": 2}, "used up \\(2 of 2"),
])
def test_join_token_checks(over, message):
    token = tokens.new_join_token("acme", ["http://x:1"])
    check_join_token(_record(token), token, time.time())
    with pytest.raises(Unauthorized, match=message):
        check_join_token(_record(token, **over), token, time.time())
    other = tokens.new_join_token("acme", ["http://x:1"])
    with pytest.raises(Unauthorized, match="not recognised"):
        check_join_token(_record(other), token, time.time())


@pytest.mark.parametrize("n,voters,members", [(1, 1, 1), (2, 1, 2), (3, 3, 3), (4, 3, 3), (5, 5, 5), (10, 5, 5)])
def test_member_targets(n, voters, members):
    assert voters_target(n) == voters and members_target(n) == members


def up(name, site="home"):
    return NodeView(name, site, True, 0)


def down(name, for_s, site="home"):
    return NodeView(name, site, False, for_s)


def test_third_machine_promotes_the_learner_before_inviting():
    nodes = [up("a"), up("b"), up("c")]
    members = [MemberView("a", 1, False), MemberView("b", 2, True)]
    assert [(x.kind, x.node) for x in plan_members(nodes, members, 60)] == [("promote", "b")]
    members = [MemberView("a", 1, False), MemberView("b", 2, False)]
    assert [(x.kind, x.node) for x in plan_members(nodes, members, 60)] == [("invite", "c")]


def test_invites_prefer_a_site_without_a_member():
    nodes = [up("a"), up("b"), up("c", "office"), up("d")]
    members = [MemberView("a", 1, False), MemberView("b", 2, False)]
    assert [(x.kind, x.node) for x in plan_members(nodes, members, 60)] == [("invite", "c")]


def test_dead_member_is_replaced_only_after_the_delay_and_with_a_spare():
    members = [MemberView(n, i, False) for i, n in enumerate("abc")]
    assert plan_members([up("a"), up("b"), down("c", 30), up("d")], members, 60) == []
    plan = plan_members([up("a"), up("b"), down("c", 90), up("d")], members, 60)
    assert [(x.kind, x.node) for x in plan] == [("remove", "c"), ("invite", "d")]
    assert plan_members([up("a"), up("b"), down("c", 90)], members, 60) == []  # no spare: keep it


def test_removal_never_costs_quorum():
    members = [MemberView(n, i, False) for i, n in enumerate("abc")]
    nodes = [up("a"), down("b", 999), down("c", 999), up("d"), up("e")]
    assert [x for x in plan_members(nodes, members, 60) if x.kind == "remove"] == []


def test_removed_machine_loses_its_member():
    members = [MemberView(n, i, False) for i, n in enumerate("abc")]
    plan = plan_members([up("a"), up("b")], members, 60)
    assert [(x.kind, x.node) for x in plan] == [("remove", "c")]


def test_the_membership_is_converged_when_machines_come_or_go_and_otherwise_every_two_seconds():
    from vcapp.node.controller import MEMBERSHIP_EVERY_S, membership_due

    three = (frozenset({"home-1", "home-2", "office-1"}), frozenset({"home-1", "home-2", "office-1"}))
    assert membership_due(three, None, 0.0, 100.0)  # a new controller's first tick
    assert not membership_due(three, three, 100.0, 100.5)  # idle: not on every tick
    assert membership_due(three, three, 100.0, 100.0 + MEMBERSHIP_EVERY_S)  # a learner catching up
    office_down = (three[0], frozenset({"home-1", "home-2"}))
    assert membership_due(office_down, three, 100.0, 100.5)  # at once
    joined = (three[0] | {"office-2"}, three[1])
    assert membership_due(joined, three, 100.0, 100.5)
