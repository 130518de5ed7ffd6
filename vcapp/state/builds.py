"""Build records: every push to a deploy branch, whatever became of it, and its whole log.

    /vc/builds/<app>/<n:08d>     {"number": 7, "sha": "<commit>", "ref": "refs/heads/main",
                                  "who": "<admin token name>", "receiver": "home-1",
                                  "built_on": "home-2" | null, "started": t, "ended": t | null,
                                  "seconds": 41.2 | null, "result": RESULTS, "stage": STAGES | null,
                                  "reason": "..." , "tail": [last lines before it stopped],
                                  "release": 5 | null}
    /vc/buildlogs/<app>/<n:08d>  {"log": "line\\nline...", "cut": lines dropped from the middle}

Build numbers count pushes; release numbers (vcapp/state/releases.py) count successful builds, so
build 7 may have made release 5 ("release"). A record is written "building" when the push
starts and finished when it ends; a receiver that dies meanwhile leaves it "building", which
the readers here show as "interrupted" once the receiver is gone or MAX_PUSH_S has passed.

Bounds (etcd refuses a request over 1.5 MiB; a range answer is held in memory whole): a log
keeps its first HEAD_BYTES and its last MAX_LOG_BYTES - HEAD_BYTES (where a build fails),
the lines between are counted in "cut"; logs live apart from the records so that listing an
app's builds reads no log; the newest KEEP builds per app stay, older ones are pruned when
a build ends. This module alone reads and writes both families; `delete_ops` is what
apps.destroy puts in its transaction.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

from vcapp.errors import NotFound
from vcapp.state import events, keys, membership
from vcapp.state.store import Store, absent, delete_op, put_op

BUILDING, SUCCEEDED, FAILED, REFUSED = "building", "succeeded", "failed", "refused"
RESULTS = (BUILDING, SUCCEEDED, FAILED, REFUSED)
# Never stored: how a "building" record reads once its push cannot be running any more.
INTERRUPTED = "interrupted"
# Longer than any push runs: a build (builder BUILD_TIMEOUT, 900 s), its pushes and copies,
# a release phase (900 s) and the health check; a record "building" for longer lost its push.
MAX_PUSH_S = 3600.0
# Where a push stopped: "config" (vcapp.toml, Procfile: refused before building), "build"
# (the image), "release phase", "health check" (the new release never served).
STAGES = ("config", "build", "release phase", "health check")
MAX_LOG_BYTES = 64 * 1024
HEAD_BYTES = 8 * 1024     # where the build ran, what was detected: worth keeping beside the end
MAX_LINE = 2000           # characters of one log line (a progress bar redraws on one line)
TAIL_LINES = 20           # the failing step's last lines, kept in the record itself
KEEP = 20                 # builds per app
NUMBER_ATTEMPTS = 5       # two receivers taking the same number: the loser takes the next

Log = Callable[[str], None]


class LogBook:
    """A push's log as it streams: every line goes on to `out` and is kept, bounded."""

    def __init__(self, out: Log, limit: int = MAX_LOG_BYTES, head: int = HEAD_BYTES):
        self.out, self.limit, self.head_limit = out, limit, head
        self.head: list[str] = []
        self.tail: deque[str] = deque()
        self.head_bytes = self.tail_bytes = self.cut = 0

    def __call__(self, line: str) -> None:
        self.out(line)
        for part in str(line).rstrip("\n").split("\n"):
            self.keep(part[:MAX_LINE])

    def keep(self, part: str) -> None:
        size = len(part.encode("utf-8", "replace")) + 1
        if not self.tail and self.head_bytes + size <= self.head_limit:
            self.head.append(part)
            self.head_bytes += size
            return
        self.tail.append(part)
        self.tail_bytes += size
        while self.tail and self.head_bytes + self.tail_bytes > self.limit:
            dropped = self.tail.popleft()
            self.tail_bytes -= len(dropped.encode("utf-8", "replace")) + 1
            self.cut += 1

    def lines(self) -> list[str]:
        return self.head + list(self.tail)

    def text(self) -> str:
        middle = [f"[... {self.cut} lines cut: a build log keeps its first {self.head_limit // 1024} KiB "
                  f"and last {(self.limit - self.head_limit) // 1024} KiB ...]"] if self.cut else []
        return "\n".join(self.head + middle + list(self.tail))

    def last(self, n: int = TAIL_LINES) -> list[str]:
        return self.lines()[-n:]


def start(store: Store, app: str, *, sha: str, ref: str, who: str, receiver: str) -> int:
    """Record a push that starts now ("building"); its build number."""
    for _ in range(NUMBER_ATTEMPTS):
        last = latest(store, app)
        number = (last["number"] if last else 0) + 1
        rec = {"number": number, "sha": sha, "ref": ref, "who": who, "receiver": receiver, "built_on": None,
               "started": time.time(), "ended": None, "seconds": None, "result": BUILDING, "stage": None,
               "reason": "", "tail": [], "release": None}
        if store.txn([absent(keys.build(app, number))], [put_op(keys.build(app, number), rec)]):
            return number
    raise RuntimeError(f"could not take a build number for {app}: other pushes kept taking them")


def finish(store: Store, app: str, number: int, result: str, book: LogBook, *, reason: str = "",
           stage: str | None = None, built_on: str | None = None, release: int | None = None) -> dict:
    """End build `number` with its `result`, keep its log, prune the oldest builds; on a
    failure or refusal, a `build.failed` event that names the command showing the log."""
    assert result in RESULTS and (stage is None or stage in STAGES), (result, stage)
    rec = store.value(keys.build(app, number)) or {"number": number, "started": time.time()}
    ended = time.time()
    rec = dict(rec, result=result, stage=stage, reason=reason, ended=ended,
               seconds=round(ended - float(rec.get("started") or ended), 1), release=release,
               built_on=built_on or rec.get("built_on"),
               tail=book.last() if result in (FAILED, REFUSED) else [])
    store.txn([], [put_op(keys.build(app, number), rec),
                   put_op(keys.build_log(app, number), {"log": book.text(), "cut": book.cut})])
    if result in (FAILED, REFUSED) and stage in ("config", "build"):
        sha = str(rec.get("sha") or "")[:7]
        events.record(store, "build.failed",
                      f"app {app} build {number} ({sha}) {result}: {first_line(reason)}; "
                      f"`vcapp builds log {app} {number}` shows its log", app=app, build=number)
    prune(store, app)
    return rec


def first_line(text: str) -> str:
    return (text or "no reason given").strip().split("\n", 1)[0][:300]


def settled(record: dict, alive: set[str], now: float) -> dict:
    """The record as it reads now (pure): "building" on a receiver that is no longer a live
    machine, or for longer than any push runs, is "interrupted", saying why."""
    if record.get("result") != BUILDING:
        return record
    receiver, started = record.get("receiver") or "?", float(record.get("started") or 0)
    if receiver not in alive:
        why = f"{receiver}, which took the push, went down before it ended"
    elif now - started > MAX_PUSH_S:
        why = f"no end was recorded within {MAX_PUSH_S:.0f} s (the node daemon on {receiver} restarted?)"
    else:
        return record
    return dict(record, result=INTERRUPTED, reason=f"{why}; push again to build it")


def list_builds(store: Store, app: str) -> list[dict]:
    """Every kept build of `app`, oldest first (records only, no log)."""
    alive, now = membership.alive_machines(store), time.time()
    return [settled(e.value, alive, now) for e in store.list(keys.build(app)) if isinstance(e.value, dict)]


def latest(store: Store, app: str) -> dict | None:
    found = store.list(keys.build(app), limit=1, descending=True)
    return found[0].value if found and isinstance(found[0].value, dict) else None


def get_build(store: Store, app: str, number: int | None = None) -> dict:
    """Build `number` of `app` (None: the newest) with its log in "log"; NotFound otherwise."""
    rec = latest(store, app) if number is None else store.value(keys.build(app, number))
    if isinstance(rec, dict):
        rec = settled(rec, membership.alive_machines(store), time.time())
    if not isinstance(rec, dict):
        which = "no builds yet: git push to its repository" if number is None else f"no build {number}"
        raise NotFound(f"app {app} has {which}; `vcapp builds {app}` lists them")
    saved = store.value(keys.build_log(app, rec["number"])) or {}
    return dict(rec, log=saved.get("log", ""), cut=saved.get("cut", 0))


def prune(store: Store, app: str, keep: int = KEEP) -> int:
    """Delete all but the newest `keep` builds of `app` (records and logs); how many went."""
    entries = store.list(keys.build(app))
    old = entries[:max(0, len(entries) - keep)]
    for e in old:
        number = int(keys.name_of(e.key, keys.build(app)))
        store.txn([], [delete_op(keys.build(app, number)), delete_op(keys.build_log(app, number))])
    return len(old)


def delete_ops(app: str) -> list[dict]:
    """The operations that remove every build of `app` (for apps.destroy's one transaction)."""
    return [delete_op(keys.build(app), prefix=True), delete_op(keys.build_log(app), prefix=True)]
