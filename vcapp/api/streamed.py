"""Work one machine does for another, its log streamed back as it runs (vcapp/deploy/remote_build.py
`call` is the other half).

The answer is text lines: each log line as it comes, an empty line at least every KEEPALIVE_S
while the work is quiet (the caller's idle limit), and last "=> {result fields}" or "!! why
it failed". A log line that starts like one of those (or with the escape) goes with a
backslash in front (buildremote.unescape takes it off), so no output can forge a result.
The work runs on a thread of its own; `cleanup` runs when the stream ends.
"""

from __future__ import annotations

import json
import queue
import threading
from typing import Callable, Iterator

from flask import Response

from vcapp.deploy import remote_build


def respond(name: str, work: Callable[[Callable[[str], None]], dict], failures: tuple[type[Exception], ...],
            where: str, cleanup: Callable[[], None] | None = None,
            then: Callable[[], Iterator[bytes]] | None = None) -> Response:
    """Run `work(log)` on a thread and stream its log and its result. An exception of
    `failures` is the work's own refusal (its message is for people); any other is reported as
    an internal error of this machine (`where`), never as a cut stream. `then`: bytes sent
    after a result line (a file the work made; the result says how many)."""
    lines: queue.Queue = queue.Queue()

    def run() -> None:
        def log(line: str) -> None:
            lines.put(remote_build.escape(line))

        try:
            lines.put(remote_build.RESULT + json.dumps(work(log)))
            if then:
                lines.put(then)
        except failures as e:
            lines.put(remote_build.FAILURE + str(e))
        except Exception as e:  # the caller must hear why
            lines.put(remote_build.FAILURE + f"internal error on {where}: {type(e).__name__}: {e}")
        finally:
            lines.put(None)

    def stream() -> Iterator[str]:
        try:
            while True:
                try:
                    line = lines.get(timeout=remote_build.KEEPALIVE_S)
                except queue.Empty:
                    yield "\n"
                    continue
                if line is None:
                    return
                if callable(line):
                    yield from line()
                    continue
                yield line.replace("\n", " ") + "\n"
        finally:
            if cleanup:
                cleanup()

    threading.Thread(target=run, name=name, daemon=True).start()
    return Response(stream(), mimetype="text/plain")
