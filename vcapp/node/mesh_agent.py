"""The mesh agent (mesh/meshd.Agent) in a thread of the node daemon.

It ran as its own process (`vcapp mesh up`, 65 MB RSS; 38 MB once the CLI stopped importing
every command), holding a second copy of the libraries the daemon already has. In the daemon
it costs a few MB (bench/footprint.py). `vcapp mesh up` still runs it alone, for a machine
that only joins the mesh and for the mesh tests.

The thread keeps the WireGuard interface and its address up; what binds to the mesh address
(etcd, the API) waits for the address (vcapp/node/daemon.py). An agent that stops (the edge
refused this machine, an error it could not handle) is started again with back-off, as a
crashed child process was; one whose settings changed is stopped and started anew.
"""

from __future__ import annotations

import logging
import threading
import time

from mesh.meshd import Agent, AgentConfig, MeshAuthError
from vcapp.node.children import Restarts

log = logging.getLogger("vcapp.node")

STOP_WAIT = 10.0  # s: its loops wake every second or two; wireguard-go gets 5 s to exit


class MeshThread:
    def __init__(self) -> None:
        self.config: AgentConfig | None = None
        self.agent: Agent | None = None
        self.thread: threading.Thread | None = None
        self.restarts = Restarts()

    def running(self) -> bool:
        return bool(self.thread and self.thread.is_alive())

    def ensure(self, config: AgentConfig) -> None:
        """Keep an agent with `config` running."""
        now = time.monotonic()
        if self.running():
            if config == self.config:
                self.restarts.still_running(now)
                return
            self.stop()
        elif self.thread is not None:  # it stopped by itself
            self.thread = None
            log.warning("mesh agent stopped; starting it again in %.0fs", self.restarts.stopped(now))
        if not self.restarts.may_start(now):
            return
        self.config = config
        self.restarts.started(now)
        self.agent = Agent(config)
        self.thread = threading.Thread(target=self._run, args=(self.agent,), name="mesh", daemon=True)
        self.thread.start()
        log.info("mesh agent started for %s at %s", config.node, config.mesh_ip)

    @staticmethod
    def _run(agent: Agent) -> None:
        try:
            agent.run()
        except MeshAuthError as e:
            log.error("the edge refused this machine: %s; ask for a new join (vcapp node join)", e)
        except Exception:
            log.exception("mesh agent failed")

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop.set()
        if self.thread is not None:
            self.thread.join(STOP_WAIT)
        self.agent, self.thread = None, None
