"""Ten machines is the most a cluster takes: the eleventh is refused and leaves no trace."""

import json

import pytest

from tests.control.conftest import ControlCluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_eleventh_machine_is_refused(make_sim):
    sim = make_sim(home=11, office=0)
    machines = [f"home-{i}" for i in range(1, 12)]
    cc = ControlCluster(sim, machines)
    cc.boot_daemons()
    cc.init("home-1")
    for m in machines[1:10]:
        cc.join(m)
    assert len(cc.nodes("home-1")) == 10

    # The founding token admits the nine machines a full cluster needs; the eleventh comes
    # with a token of its own, so what refuses it is the cluster's size, not the token.
    fresh = json.loads(cc.vcapp("home-1", "tokens", "join", "create", "--json").stdout)["token"]
    refused = cc.join("home-11", token=fresh, check=False)

    assert refused.returncode != 0
    assert "cluster is full: 10 machines" in refused.stderr
    assert "home-11" not in cc.nodes("home-1")
    assert not (sim.dc.host_dir("home-11") / "data" / "node.json").exists()
    # Five etcd voters at five machines and more.
    members = cc.wait(lambda: (out := cc.etcd("home-1", "member", "list", check=False).stdout).count("false") == 5 and out,
                      90, "five etcd voters")
    assert members.count(", started,") == 5
