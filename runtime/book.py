"""The agent's small memory that podman does not keep: restart counts and failed releases.

Stored as JSON in $VCAPP_DATA_DIR/runtime/book.json so a restarted agent keeps reporting
the same restart counts and does not retry a release that already failed its health check.
    {"restarts": {"blog/0": 3},          # total restarts of the instance, for status
     "streak":   {"blog/0": 2},          # restarts in the current crash loop, for back-off
     "failed":   {"blog/0": {"release": "4", "reason": "...", "at": 1700000000.0}}}
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Book:
    restarts: dict[str, int] = field(default_factory=dict)
    streak: dict[str, int] = field(default_factory=dict)
    failed: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> "Book":
        if path is None or not path.exists():
            return cls()
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            return cls()  # a torn write: start counting afresh rather than refuse to run

    def save(self, path: Path | None) -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), sort_keys=True))
        os.replace(tmp, path)

    def forget_except(self, keys: set[str]) -> None:
        for table in (self.restarts, self.streak, self.failed):
            for k in set(table) - keys:
                del table[k]
