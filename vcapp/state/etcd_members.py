"""Which machines run an etcd member, and how that set changes.

3 voting members once the cluster has 3 machines, 5 from 5 machines on; the others are
clients. A machine enters as a *learner* (it copies the data but does not vote, so adding it
never costs quorum) and is promoted once it has caught up. A member whose machine has been
dead longer than `replace_after` is removed when a live machine can take its place, and only
when the remaining voters keep quorum.

`plan_members` is pure: cluster facts in, a list of actions out. `apply` carries them out.

    /vc/etcd/members/<node>  {member_id, peer_url}   (written when a member is invited)
    /vc/etcd/invite/<node>   {initial_cluster, member_id}   (read by that node's daemon)
"""

from __future__ import annotations

from dataclasses import dataclass

from etcd3gw import exceptions as etcd_errors

from vcapp.state import events, keys
from vcapp.state.store import Member, Store, error_text

# A machine that rebooted is back within a minute or two; replacing its member sooner
# would copy the whole database around for nothing.
DEFAULT_REPLACE_AFTER = 120.0


def voters_target(n_nodes: int) -> int:
    """Two voters are worse than one (either loss stops the cluster), so 1 → 3 → 5."""
    if n_nodes <= 2:
        return 1
    return 3 if n_nodes <= 4 else 5


def members_target(n_nodes: int) -> int:
    """Members including learners: with two machines the second keeps a learner copy."""
    return min(n_nodes, 2) if n_nodes <= 2 else voters_target(n_nodes)


@dataclass(frozen=True)
class NodeView:
    name: str
    site: str
    up: bool
    down_for: float  # seconds; 0 when up


@dataclass(frozen=True)
class MemberView:
    name: str  # the node it belongs to ("" if unknown)
    id: int
    learner: bool


@dataclass(frozen=True)
class Action:
    kind: str  # remove | invite | promote
    node: str
    member_id: int = 0
    reason: str = ""


def plan_members(nodes: list[NodeView], members: list[MemberView], replace_after: float) -> list[Action]:
    by_name = {n.name: n for n in nodes}
    member_names = {m.name for m in members}
    spare = [n for n in nodes if n.up and n.name not in member_names]
    actions: list[Action] = []

    voters = [m for m in members if not m.learner]
    alive_voters = [m for m in voters if by_name.get(m.name, NodeView("", "", False, 0)).up]
    for m in members:
        node = by_name.get(m.name)
        gone = node is None
        long_dead = node is not None and not node.up and node.down_for >= replace_after
        if not (gone or (long_dead and spare)):
            continue
        if not m.learner:
            remaining = len(voters) - 1
            if remaining < 1 or len(alive_voters) < remaining // 2 + 1:
                continue  # removing it would cost quorum
            voters = [v for v in voters if v.id != m.id]
        why = "machine removed" if gone else f"machine dead for {node.down_for:.0f}s"
        actions.append(Action("remove", m.name, m.id, why))
    removed = {a.member_id for a in actions}
    members = [m for m in members if m.id not in removed]

    n_voters = sum(1 for m in members if not m.learner)
    for m in members:
        if m.learner and n_voters < voters_target(len(nodes)) and by_name.get(m.name) and by_name[m.name].up:
            actions.append(Action("promote", m.name, m.id, f"{n_voters} of {voters_target(len(nodes))} voters"))
            n_voters += 1
    promoted = {a.member_id for a in actions if a.kind == "promote"}
    # etcd admits one learner at a time: invite only when none is left unpromoted.
    learner_left = any(m.learner and m.id not in promoted for m in members)
    if len(members) < members_target(len(nodes)) and spare and not learner_left and not promoted:
        sites: dict[str, int] = {}
        for m in members:
            if m.name in by_name:
                sites[by_name[m.name].site] = sites.get(by_name[m.name].site, 0) + 1
        pick = min(spare, key=lambda n: (sites.get(n.site, 0), n.name))
        actions.append(Action("invite", pick.name, 0, f"{len(members)} of {members_target(len(nodes))} members"))
    return actions


def member_views(store: Store, members: list[Member]) -> list[MemberView]:
    """Name every etcd member after its node (by our records, else etcd's own name)."""
    records = {e.value["member_id"]: e.key[len(keys.ETCD_MEMBERS):] for e in store.list(keys.ETCD_MEMBERS)}
    return [MemberView(records.get(m.id, m.name), m.id, m.is_learner) for m in members]


def initial_cluster(members: list[Member], new_id: int, new_name: str) -> str:
    parts = []
    for m in members:
        name = new_name if m.id == new_id else m.name
        if name and m.peer_urls:
            parts.append(f"{name}={m.peer_urls[0]}")
    return ",".join(parts)


def apply(store: Store, action: Action, peer_url_of) -> None:
    """Carry out one action. Promotion of a learner that has not caught up fails: the next
    controller tick tries again (and invites wait for it: etcd allows one learner at a time)."""
    if action.kind == "remove":
        remove_member(store, action.node, action.member_id, action.reason)
    elif action.kind == "invite":
        peer_url = peer_url_of(action.node)
        member, all_members = store.as_root().member_add(peer_url, learner=True)  # root only: etcdauth.py
        store.put(keys.etcd_member(action.node), {"member_id": member.id, "peer_url": peer_url})
        store.put(keys.etcd_invite(action.node), {
            "member_id": member.id, "initial_cluster": initial_cluster(all_members, member.id, action.node)})
        events.record(store, "etcd.member.invited", f"{action.node} invited as etcd learner ({action.reason})",
                      node=action.node)
    elif action.kind == "promote":
        store.as_root().member_promote(action.member_id)
        events.record(store, "etcd.member.promoted", f"{action.node} promoted to etcd voter ({action.reason})",
                      node=action.node)


def remove_member(store: Store, name: str, member_id: int, reason: str) -> None:
    if member_id in {m.id for m in store.members()}:
        try:
            store.as_root().member_remove(member_id)
        except etcd_errors.Etcd3Exception as e:
            if "member not found" not in error_text(e):  # removed meanwhile (a leave racing the controller)
                raise
    store.delete(keys.etcd_member(name))
    store.delete(keys.etcd_invite(name))
    events.record(store, "etcd.member.removed", f"{name} no longer runs an etcd member ({reason})", node=name)


def remove_member_of(store: Store, name: str) -> bool:
    """Remove the etcd member of node `name`, if it has one (used by `vcapp node remove`)."""
    record = store.value(keys.etcd_member(name))
    if record is None:
        return False
    remove_member(store, name, int(record["member_id"]), "machine removed")
    return True
