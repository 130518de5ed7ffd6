"""Shared fixtures: simulated clusters for multi-machine tests.

`sim_cluster` (module scope) brings up the default topology under a unique name and tears
it down after the module; `make_sim` builds other shapes. A `Sim` runs commands on hosts
and fetches URLs from the client host, the way a person at that machine would.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path

import pytest

from vcapp.dev.cluster import DevCluster, forget_stale_addresses, list_clusters
from vcapp.dev.rigs.sim import Sim
from vcapp.dev.topology import default

TEST_CLUSTER = re.compile(r"^t[0-9a-f]{4}$")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("multi-machine tests create network namespaces: run the suite as root (scripts/test)")


def _new_name() -> str:
    return "t" + secrets.token_hex(2)


OWNER_FILE = "owner.pid"


def claim(name: str) -> DevCluster:
    """A test cluster's directory, marked as this test process's: the clean-up of another test
    session started meanwhile (_clean_stale_test_clusters) leaves it alone."""
    dc = DevCluster(name)
    dc.dir.mkdir(parents=True)
    (dc.dir / OWNER_FILE).write_text(str(os.getpid()))
    return dc


def _owner_alive(dc: DevCluster) -> bool:
    try:
        pid = int((dc.dir / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return False
    return Path(f"/proc/{pid}").exists()


def _module_rank(item: pytest.Item) -> int:
    return 0 if item.get_closest_marker("slow") else 1 if item.get_closest_marker("cluster") else 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules marked slow first, then the other cluster modules, then the rest, each module's
    tests kept together and in their order. scripts/test hands whole modules to two workers
    (xdist's loadfile) in this order: a long module started last would run alone at the end,
    and the quick ones fill the gaps."""
    rank: dict[str, int] = {}
    for item in items:
        rank[item.module.__name__] = min(rank.get(item.module.__name__, 2), _module_rank(item))
    position = {id(item): n for n, item in enumerate(items)}
    items.sort(key=lambda item: (rank[item.module.__name__], position[id(item)]))


@pytest.fixture(scope="session", autouse=True)
def _clean_stale_test_clusters():
    """A crashed earlier run can leave test clusters behind: remove those whose pytest is
    gone (never `dev`, never a cluster of a test run still going on beside this one)."""
    if os.geteuid() == 0:
        for name in list_clusters():
            dc = DevCluster(name)
            if TEST_CLUSTER.match(name) and not _owner_alive(dc):
                dc.down()
        forget_stale_addresses()  # what earlier runs' powered-off machines left allocated
    yield


@pytest.fixture(scope="module")
def make_sim():
    """Factory: make_sim(home=2, office=1, office_nat='easy') -> Sim, torn down after the module."""
    made: list[DevCluster] = []

    def make(home: int = 2, office: int = 1, office_nat: str = "easy") -> Sim:
        _require_root()
        dc = claim(_new_name())
        made.append(dc)
        dc.up(default(dc.name, home, office, office_nat))
        return Sim(dc)

    yield make
    for dc in made:
        _keep_logs(dc)
        dc.down()


def _keep_logs(dc: DevCluster) -> None:
    """With VCAPP_TEST_KEEP_LOGS=DIR, every machine's logs outlive the cluster (DIR/<cluster>/<host>):
    its boot services' and those its daemon writes (data/log)."""
    keep = os.environ.get("VCAPP_TEST_KEEP_LOGS")
    if not keep:
        return
    for log_dir in [*(dc.dir / "hosts").glob("*/log"), *(dc.dir / "hosts").glob("*/data/log")]:
        host = log_dir.parent.parent.name if log_dir.parent.name == "data" else log_dir.parent.name
        shutil.copytree(log_dir, Path(keep) / dc.name / host, dirs_exist_ok=True)


@pytest.fixture(scope="module")
def sim(make_sim) -> Sim:
    """The default topology: home-1, home-2 behind the home NAT, office-1 behind the office NAT."""
    return make_sim()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
