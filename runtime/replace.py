"""Zero-downtime replace: start the new release beside the old, wait healthy, then stop the old.

If the new release does not pass its health check within its start grace (or exits), it is
removed and the old one keeps serving. The result is typed (`Promotion` and the check's own
answer): the agent books it and reports it as fields, and nobody parses a sentence.
`on_promoted` runs between "new is healthy" and "old stops", so the glue can point traffic
at the new host port (publish status, wait for the routers to switch) before the old one
goes; `retire` then stops the old one (default: at once), e.g. with a drain period.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

from runtime.health import wait_healthy
from runtime.podman import Container, PodmanDriver
from runtime.spec import InstanceSpec


class Promotion(str, enum.Enum):
    """How a replace ended; the value is what status reports carry."""

    PROMOTED = "promoted"  # the new release passed its check and serves; the old one stopped
    REFUSED = "refused"    # the new release failed its check and was removed; the old one serves


@dataclass(frozen=True)
class ReplaceResult:
    outcome: Promotion
    release: str  # the release that was tried
    previous: str  # the release it was to take over from
    check: str  # the health check's answer: "HTTP 200 from /", "exited with code 1", ...

    @property
    def promoted(self) -> bool:
        return self.outcome is Promotion.PROMOTED

    @property
    def message(self) -> str:
        """One line for people (logs, the status report's message)."""
        if self.promoted:
            return f"release {self.release} is healthy ({self.check}); release {self.previous} stopped"
        return f"release {self.release} failed its health check: {self.check}; release {self.previous} keeps serving"


def replace(driver: PodmanDriver, old: Container, spec: InstanceSpec, host_port: int,
            on_promoted: Callable[[], None] | None = None, binds: dict[str, str] | None = None,
            retire: Callable[[Container], None] | None = None) -> ReplaceResult:
    """Bring `spec` up on `host_port` next to `old`; keep exactly one of them."""
    driver.run(spec, host_port, binds)
    ok, message = wait_healthy(spec.health, host_port if spec.port else None, spec.health.start_grace_s,
                               alive=lambda: driver.is_running(spec.container_name))
    if not ok:
        driver.remove(spec.container_name)
        return ReplaceResult(Promotion.REFUSED, spec.release, old.release, message)
    if on_promoted:
        on_promoted()
    if retire:
        retire(old)
    else:
        driver.remove(old.name)
    return ReplaceResult(Promotion.PROMOTED, spec.release, old.release, message)
