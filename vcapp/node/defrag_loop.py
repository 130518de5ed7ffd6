"""Node loop: give etcd's freed pages back by defragmenting this machine's member when most of
its database file is free space.

etcd compacts revisions older than COMPACTION_RETENTION (vcapp/node/etcd.py) but keeps their
pages in its database file for good. The filers rewrite a file's entry, every chunk listed, on
each fsync, so after a burst of such writes the file stays at its peak (121-128 MB with 71 MB
in use after 30 minutes of bench/soak.py). Defragmenting rewrites the file with the live data
only. (The member's memory is mostly its raft log: etcd.py SNAPSHOT_COUNT bounds that.)

Observe: this member's status (database size, the part in use, the leader) and the voters.
Decide (`plan`, pure): nothing while the free part is under MIN_FREE_MB or under half the
file; a follower defragments; the leader of a cluster with other voters hands leadership to
one of them first (a defragmenting member applies nothing until it is done: on the leader
that would hold back every lease renewal of the cluster, and machines would fence their
apps). Act: one member at a time, under the cluster-wide turn keys.ETCD_DEFRAG_TURN (on a
lease of TURN_TTL_S), so a quorum always answers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from vcapp.node.harness import Worker
from vcapp.state import keys
from vcapp.state.store import Store, StoreUnavailable, absent, put_op

log = logging.getLogger("vcapp.node")

CHECK_EVERY_S = 60.0  # a database grows by tens of MB a minute at the very most
MIN_FREE_MB = 64  # below this the space is not worth a pause of the member
MIN_FREE_SHARE = 0.5  # ... nor while most of the file is live data (it would not shrink)
DEFRAG_TIMEOUT_S = 120.0  # ~1 s per 100 MB here; the request must outlast the rewrite
TURN_TTL_S = 150  # a member that died mid-defragmentation frees the turn this long after
MB = 1 << 20


@dataclass(frozen=True)
class MemberStatus:
    member_id: int
    leader: int
    db_size: int  # bytes of the database file
    in_use: int  # bytes of it holding live data

    @property
    def free(self) -> int:
        return max(0, self.db_size - self.in_use)


@dataclass(frozen=True)
class Defragment:
    """Defragment this member."""


@dataclass(frozen=True)
class HandOver:
    """Make `to` the leader first (this member leads)."""
    to: int


def plan(st: MemberStatus, voters: list[int], min_free: int = MIN_FREE_MB * MB,
         min_share: float = MIN_FREE_SHARE) -> Defragment | HandOver | None:
    """What this member should do now (pure). `voters`: ids of the voting members."""
    if st.free < min_free or st.free < min_share * st.db_size:
        return None
    others = sorted(v for v in voters if v != st.member_id)
    if st.leader == st.member_id and others:
        return HandOver(others[0])
    return Defragment()


def member_status(own: Store) -> MemberStatus:
    """The status of the member `own` talks to (a Store with that member's endpoint only)."""
    got = own.call("/maintenance/status", {})
    return MemberStatus(member_id=int(got["header"]["member_id"]), leader=int(got.get("leader") or 0),
                        db_size=int(got.get("dbSize") or 0), in_use=int(got.get("dbSizeInUse") or 0))


def defragment(own: Store, cluster: Store, node: str) -> bool:
    """Defragment the member of `own` during this machine's turn; False when another member
    has the turn (the next check tries again)."""
    lease = cluster.grant(TURN_TTL_S)
    if not cluster.txn([absent(keys.ETCD_DEFRAG_TURN)], [put_op(keys.ETCD_DEFRAG_TURN, {"node": node}, lease=lease)]):
        cluster.revoke(lease)
        return False
    try:
        own.call("/maintenance/defragment", {})
    finally:
        cluster.revoke(lease)  # the turn key goes with its lease
    return True


def hand_over(own: Store, to: int) -> None:
    own.call("/maintenance/transfer-leadership", {"targetID": str(to)})


def run_once(own: Store, cluster: Store, node: str, **limits) -> str | None:
    """Observe, decide and act once; what was done, for the log (None: nothing)."""
    before = member_status(own)
    voters = [m.id for m in cluster.members() if not m.is_learner]
    action = plan(before, voters, **limits)
    if isinstance(action, HandOver):
        hand_over(own, action.to)
        return f"handed etcd leadership to member {action.to:x} before defragmenting"
    if isinstance(action, Defragment):
        if not defragment(own, cluster, node):
            return None
        after = member_status(own)
        return (f"etcd defragmented: database {before.db_size / MB:.0f} MB -> {after.db_size / MB:.0f} MB "
                f"({before.in_use / MB:.0f} MB in use)")
    return None


class DefragLoop:
    name = "etcd-defrag"

    def __init__(self, ctx) -> None:
        self.cfg = ctx.cfg
        self.worker = Worker("vcapp-etcd-defrag", self._sync, CHECK_EVERY_S, log=log)
        self.worker.start()

    def step(self, ctx) -> None:
        self.cfg = ctx.cfg

    def _sync(self) -> None:
        cfg = self.cfg
        if not cfg.etcd.member:
            return
        try:
            own = Store([cfg.etcd_client_url], timeout=DEFRAG_TIMEOUT_S).as_root()
            done = run_once(own, Store(cfg.store_endpoints()).as_root(), cfg.name)
        except StoreUnavailable:
            return  # no quorum or no member: nothing to pause now
        if done:
            log.info("%s", done)
