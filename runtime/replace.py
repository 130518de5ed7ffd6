"""Zero-downtime replace: start the new release beside the old, wait healthy, then stop the old.

If the new release does not pass its health check within its start grace (or exits), it is
removed and the old one keeps serving; the result says why, for the status report.
`on_promoted` runs between "new is healthy" and "old stops", so the glue can point traffic
at the new host port (publish status, let the router switch) before the old one goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from runtime.health import wait_healthy
from runtime.podman import Container, PodmanDriver
from runtime.spec import InstanceSpec


@dataclass(frozen=True)
class ReplaceResult:
    promoted: bool
    reason: str


def replace(driver: PodmanDriver, old: Container, spec: InstanceSpec, host_port: int,
            on_promoted: Callable[[], None] | None = None, binds: dict[str, str] | None = None) -> ReplaceResult:
    """Bring `spec` up on `host_port` next to `old`; keep exactly one of them."""
    driver.run(spec, host_port, binds)
    ok, message = wait_healthy(spec.health, host_port if spec.port else None, spec.health.start_grace_s,
                               alive=lambda: driver.is_running(spec.container_name))
    if not ok:
        driver.remove(spec.container_name)
        return ReplaceResult(False, f"release {spec.release} failed its health check: {message}; "
                                    f"release {old.release} keeps serving")
    if on_promoted:
        on_promoted()
    driver.remove(old.name)
    return ReplaceResult(True, f"release {spec.release} is healthy ({message}); release {old.release} stopped")
