"""An instance moved with its volume after a machine loss starts once new writes can land: the
app data rules ask for no more copies than the live machines hold (vcapp/state/volumes.py
wait_writable), as records in a real etcd."""

from __future__ import annotations

import threading
import time

from storage import replication
from tests.api.test_drain import machines
from vcapp.state import volumes

LIVE = ["home-1", "home-2"]


def test_a_moved_volume_instance_waits_until_the_rules_fit_the_live_machines(cluster):
    store = cluster.store
    machines(store, up={"home-1": "home", "home-2": "home"}, down={"office-1": "office"})
    full, lowered = replication.choose_code(["home", "home", "office"]), replication.choose_code(["home", "home"])
    assert volumes.wait_writable(store, LIVE, timeout=0.1), "a cluster whose storage was never set up waits for nothing"

    # office-1 is lost and the controller has not lowered the rules yet: every write needs it
    store.put(volumes.STATE, {"code": full, "state": "healthy"})
    began = time.monotonic()
    assert volumes.wait_writable(store, LIVE, timeout=1.0) is False
    assert time.monotonic() - began >= 1.0

    # the controller lowers them while the instance waits: it starts then, not at the timeout
    threading.Timer(1.0, lambda: store.put(volumes.STATE, {"code": lowered, "state": "degraded"})).start()
    began = time.monotonic()
    assert volumes.wait_writable(store, LIVE, timeout=20.0) is True
    assert 0.9 <= time.monotonic() - began < 5.0

    # office-1 back: the lowered rules ask for fewer copies than there are machines, which is fine
    machines(store, up={"home-1": "home", "home-2": "home", "office-1": "office"})
    assert volumes.wait_writable(store, [*LIVE, "office-1"], timeout=0.1)
