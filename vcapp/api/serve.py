"""The admin API's HTTP server: cheroot (CherryPy's WSGI server), a pool of threads in the
process that runs it.

The node daemon runs it in threads of its own process (vcapp/node/daemon.py), bound to the
machine's mesh address and to loopback: one process for the machine's loops and its API, no
arbiter process (issue 21: gunicorn's arbiter and worker held 89 MB RSS beside the daemon).
`python -m vcapp.api.serve ADDR:PORT...` serves it alone (the API tests run it so).

Per address, THREADS threads: a git push streaming its build log or an `events --follow`
long poll holds one. cheroot hands the view the body as it arrives (nothing is read before
the view decides: vcapp/api/body.py refuses an oversized JSON body on its headers) and
de-chunks a chunked body itself, saying so with `wsgi.input_terminated`
(gitserver/wsgi.py relies on it). Responses stream as the view yields them.
"""
from __future__ import annotations

import logging
import sys
import threading

from cheroot import wsgi

log = logging.getLogger("vcapp.api")

THREADS = 8
STOP_WAIT = 5.0  # s: cheroot's serve loop notices stop() within its accept timeout


class ApiServer:
    """The API served on a set of ADDR:PORT binds, one cheroot server (and thread) each."""

    def __init__(self):
        self.binds: tuple[str, ...] = ()
        self.servers: list[wsgi.Server] = []
        self.threads: list[threading.Thread] = []

    def running(self) -> bool:
        return bool(self.threads) and all(t.is_alive() for t in self.threads)

    def ensure(self, binds: list[str]) -> None:
        """Serve on `binds` (start, restart after a server died, or move to new binds).
        Raises OSError when an address cannot be bound (the caller tries again later)."""
        if not binds:
            raise ValueError("the API needs at least one ADDR:PORT to listen on")
        if self.running() and self.binds == tuple(binds):
            return
        self.stop()
        from vcapp.api.app import ApiConfig, create_app  # reads node.json: only when serving

        app = create_app(ApiConfig.from_node_config())
        try:
            for bind in binds:
                host, _, port = bind.rpartition(":")
                server = wsgi.Server((host, int(port)), app, numthreads=THREADS, server_name="vcapp")
                self.servers.append(server)
                server.prepare()  # binds now: an address in use raises here, not in the thread
        except Exception:
            self.stop()
            raise
        self.binds = tuple(binds)
        for server, bind in zip(self.servers, binds):
            thread = threading.Thread(target=self._serve, args=(server,), name=f"api {bind}", daemon=True)
            thread.start()
            self.threads.append(thread)
        log.info("admin API serving on %s", ", ".join(binds))

    @staticmethod
    def _serve(server: wsgi.Server) -> None:
        try:
            server.serve()
        except Exception:  # the daemon notices the dead thread and serves again next tick
            log.exception("the admin API server on %s stopped", server.bind_addr)

    def stop(self) -> None:
        for server in self.servers:
            try:
                server.stop()
            except Exception:  # never bound, or already closed
                pass
        for thread in self.threads:
            thread.join(STOP_WAIT)
        self.servers, self.threads, self.binds = [], [], ()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not argv:
        print("usage: python -m vcapp.api.serve ADDR:PORT [ADDR:PORT...]", file=sys.stderr)
        return 2
    server = ApiServer()
    server.ensure(argv)
    try:
        for thread in server.threads:
            thread.join()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
