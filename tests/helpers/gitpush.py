"""An app's author on a cluster `vcapp dev up` installed (vcapp/dev/platform.py): create the
app, git push its files from the first machine, and ask it through the edge as a visitor."""

from __future__ import annotations

import subprocess

from vcapp.dev import platform

PUSH_TIMEOUT = 900.0  # s: a first build loads its stack into the machine (go: 196 MB), then fetches


def push(sim, found: platform.Platform, app: str, files: dict[str, str], *create: str,
         exists: bool = False) -> subprocess.CompletedProcess:
    """Create `app` (unless it `exists`; `create`: more `vcapp apps create` options) and git
    push `files` to it."""
    if not exists:
        sim.run(found.first, "vcapp", "apps", "create", app, *create)
    repo = sim.dc.host_dir(found.first) / "data" / "push" / app
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", app]):
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@vcapp.test", *args],
                       check=True, capture_output=True)
    remote = f"{found.api_url}/git/{app}.git"  # the machine's git asks `vcapp git-credential` for the token
    return sim.run(found.first, "git", "-C", str(repo), "push", remote, "main", check=False, timeout=PUSH_TIMEOUT)


def built_line(pushed: subprocess.CompletedProcess) -> str:
    """The build log's `-----> built <image> in N s` line (how much of a push the build took)."""
    return next((line.removeprefix("remote:").split(" (sha256:")[0].strip() for line in pushed.stderr.splitlines()
                 if "-----> built " in line), "no build line")


def through_the_edge(sim, app: str, path: str = "/", *curl: str) -> tuple[str, str]:
    """(HTTP status, body) of https://<app>.apps.test<path> from the client host, via the edge."""
    host = f"{app}.{platform.DOMAIN}"
    out = sim.fetch(f"https://{host}{path}", "--cacert", str(platform.edge_ca(sim.dc)),
                    "--resolve", f"{host}:443:{sim.addr('edge')}", "-w", "\n%{http_code}", *curl)
    body, _, status = out.stdout.rpartition("\n")
    return status, body
