"""Procfile process types and the release phase through a real git push, on a simulated
cluster of 3 machines with the real daemons: an app built from a Dockerfile FROM the tiny
busybox image (on every machine) with a Procfile. Its `release:` line runs once per release
in the new image with the app's env and secrets, its output in the push log; its `worker:`
line runs as an instance without HTTP. A release whose `release:` command exits non-zero is
refused, the log says why, and the release before keeps serving. An app with a volume gets
it in its release command too: mounted on the machine that took the push while no instance
holds it, then on the machine whose instance does (the data the app serves). `vcapp run`
runs a one-off command in the current release the same way and exits with its status."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.control.conftest import ControlCluster, three_machines

pytestmark = pytest.mark.cluster

APP = "relapp"
PUSH_TIMEOUT = 600
SERVE_TIMEOUT = 90
DOCKERFILE = """\
FROM localhost/vcapp/tiny:latest
CMD ["sh", "-c", "mkdir -p /www && echo {version} > /www/index.html && exec httpd -f -p 8080 -h /www"]
"""
VCAPP_TOML = 'port = 8080\n\n[health]\npath = "/index.html"\n\n[env]\nMODE = "prod"\n'
GOOD_RELEASE = 'echo "migrating in $MODE mode, token of ${#TOKEN} characters"'
BAD_RELEASE = "echo checking the schema; echo schema v9 is newer than this code >&2; exit 3"


@pytest.fixture(scope="module")
def cc(make_sim, tmp_path_factory):
    cc = three_machines(make_sim, tmp_path_factory)
    registry = f"http://{cc.sim.addr('home-1')}:5000/v2/"
    cc.wait(lambda: cc.sim.run("home-3", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2",
                               registry, check=False).stdout.strip() == "401", 60, "home-1's registry answering")
    cc.vcapp("home-1", "apps", "create", APP, "--memory", "64M")
    cc.vcapp("home-1", "secrets", "set", APP, "TOKEN=abcdef")
    return cc


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("laptop") / APP
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    return path


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(path), "-c", "user.name=Alice", "-c", "user.email=alice@example.com",
                           *args], check=True, capture_output=True, text=True).stdout


def commit(repo: Path, version: str, procfile: str) -> None:
    for name, text in {"Dockerfile": DOCKERFILE.format(version=version), "vcapp.toml": VCAPP_TOML,
                       "Procfile": procfile}.items():
        (repo / name).write_text(text)
        git(repo, "add", name)
    git(repo, "commit", "-q", "-m", version)


def push(cc: ControlCluster, repo: Path) -> subprocess.CompletedProcess:
    url = f"http://admin:{cc.admin_token}@{cc.sim.addr('home-1')}:7180/git/{APP}.git"
    return cc.sim.run("home-3", "git", "-C", str(repo), "push", url, "main", check=False, timeout=PUSH_TIMEOUT)


def remote_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line[len("remote: "):].strip() for line in proc.stderr.splitlines() if line.startswith("remote: ")]


def ps(cc: ControlCluster) -> list[dict]:
    proc = cc.vcapp("home-1", "ps", APP, "--json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else []


def serving(cc: ControlCluster) -> str | None:
    """What the web instance answers on its own machine (published on its loopback only)."""
    for row in ps(cc):
        if row["process"] == "web" and row.get("host_port") and row["state"] == "running":
            got = cc.sim.run(row["node"], "curl", "-sf", "--max-time", "3",
                             f"http://127.0.0.1:{row['host_port']}/index.html", check=False)
            if got.returncode == 0:
                return got.stdout.strip()
    return None


def test_release_command_runs_with_env_and_secrets_and_the_worker_runs(cc, repo):
    commit(repo, "v1", f"release: {GOOD_RELEASE}\nworker: while true; do sleep 1; done\n")
    proc = push(cc, repo)
    lines = remote_lines(proc)
    assert proc.returncode == 0, proc.stderr
    assert f"-----> release phase: running `{GOOD_RELEASE}` in v1" in lines
    assert "migrating in prod mode, token of 6 characters" in lines
    assert "abcdef" not in proc.stderr  # the secret reached the command, not the log
    assert any(line.startswith("-----> release phase done in") for line in lines)
    assert "-----> worker process: while true; do sleep 1; done (no HTTP; `vcapp scale APP worker=N`)" in lines
    cc.wait(lambda: serving(cc) == "v1", SERVE_TIMEOUT, "v1 serving")
    worker = cc.wait(lambda: [r for r in ps(cc) if r["instance"] == "worker-0" and r["state"] == "running"],
                     SERVE_TIMEOUT, "the Procfile's worker running")[0]
    assert worker["process"] == "worker" and worker["host_port"] is None


def test_a_failing_release_command_refuses_the_release_and_v1_keeps_serving(cc, repo):
    commit(repo, "v2", f"release: {BAD_RELEASE}\nworker: while true; do sleep 1; done\n")
    proc = push(cc, repo)
    assert proc.returncode != 0
    assert (f"release command `{BAD_RELEASE}` exited 3: checking the schema | schema v9 is newer than this code"
            in proc.stderr), proc.stderr
    assert "v1 keeps serving" in proc.stderr
    history = json.loads(cc.vcapp("home-1", "releases", APP, "--json").stdout)
    assert history["current"] == 1
    assert {r["number"]: r["status"] for r in history["releases"]}[2] == "failed"
    assert serving(cc) == "v1"
    assert all(str(r.get("release") or "").startswith("1.") for r in ps(cc) if r["state"] == "running")


VOLUME_APP = "relvol"
VOLUME_DOCKERFILE = """\
FROM localhost/vcapp/tiny:latest
CMD ["httpd", "-f", "-p", "8080", "-h", "/data"]
"""


def test_the_release_command_migrates_the_data_on_the_apps_volume(cc, tmp_path):
    cc.vcapp("home-1", "apps", "create", VOLUME_APP, "--memory", "64M", "--volume", "data:/data")
    cc.vcapp("home-1", "secrets", "set", VOLUME_APP, "TOKEN=xyz")
    refused = cc.vcapp("home-1", "run", VOLUME_APP, "--", "true", check=False)
    assert refused.returncode == 1 and "has no release to run a command in yet; deploy it first" in refused.stderr
    assert "ready" in cc.vcapp("home-1", "volumes", "create", VOLUME_APP, "data", "--size", "64M").stdout
    repo = tmp_path / VOLUME_APP
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")

    def release(version: str) -> list[str]:
        for name, text in {"Dockerfile": VOLUME_DOCKERFILE, "vcapp.toml": VCAPP_TOML,
                           "Procfile": f"release: echo {version} migrated >> /data/index.html\n"}.items():
            (repo / name).write_text(text)
            git(repo, "add", name)
        git(repo, "commit", "-q", "-m", version)
        url = f"http://admin:{cc.admin_token}@{cc.sim.addr('home-1')}:7180/git/{VOLUME_APP}.git"
        proc = cc.sim.run("home-3", "git", "-C", str(repo), "push", url, "main", check=False, timeout=PUSH_TIMEOUT)
        assert proc.returncode == 0, proc.stderr
        return remote_lines(proc)

    def page() -> str | None:
        rows = [r for r in json.loads(cc.vcapp("home-1", "ps", VOLUME_APP, "--json").stdout)
                if r.get("host_port") and r["state"] == "running"]
        got = rows and cc.sim.run(rows[0]["node"], "curl", "-sf", "--max-time", "3",
                                  f"http://127.0.0.1:{rows[0]['host_port']}/index.html", check=False)
        return got.stdout.strip() if got and got.returncode == 0 else None

    lines = release("v1")  # nobody holds the volume yet: the machine that took the push mounts it
    assert "-----> volume data mounted on home-1" in lines, lines
    cc.wait(lambda: page() == "v1 migrated", SERVE_TIMEOUT, "v1 serving what its release command wrote")
    holder = json.loads(cc.vcapp("home-1", "ps", VOLUME_APP, "--json").stdout)[0]["node"]

    lines = release("v2")  # now the instance's machine holds it: the command runs there, in that mount
    where = ("-----> on home-1, in the volumes its instance uses" if holder == "home-1"
             else f"-----> sent to {holder}, which holds the app's volumes")
    assert where in lines, lines
    cc.wait(lambda: page() == "v1 migrated\nv2 migrated", SERVE_TIMEOUT, "v2's migration in the served data")

    # A one-off command: the volume the app serves, its secret, its exit status, from any machine.
    ran = cc.vcapp("home-2", "run", VOLUME_APP, "--", "sh", "-c", "cat /data/index.html; echo token=$TOKEN; exit 7",
                   check=False)
    assert ran.returncode == 7, (ran.stdout, ran.stderr)
    assert ran.stdout.splitlines()[-3:] == ["v1 migrated", "v2 migrated", "token=xyz"], ran.stdout
    # On a terminal, asked of a machine that does not hold the volume: it hands the session on.
    asker = next(h for h in ("home-1", "home-2", "home-3") if h != holder)
    term = cc.sim.run(asker, "vcapp", "run", "-t", VOLUME_APP, "--", "sh", input="cat /data/index.html; exit 5\n",
                      check=False, timeout=180)
    assert term.returncode == 5 and "v2 migrated" in term.stdout, (term.returncode, term.stdout, term.stderr)


def test_vcapp_run_sees_the_env_and_secrets_of_the_release_that_serves(cc):
    ran = cc.vcapp("home-3", "run", APP, "--", "sh", "-c", 'echo "$MODE ${#TOKEN}"; echo "=> not a result"', check=False)
    assert ran.returncode == 0, (ran.stdout, ran.stderr)
    assert ran.stdout.splitlines() == ["prod 6", "=> not a result"]  # output cannot forge the end of the stream


def test_vcapp_exec_runs_inside_the_running_instance_on_its_machine(cc):
    """Unlike `vcapp run`, exec reaches the instance itself: its files, its processes."""
    web = next(r for r in ps(cc) if r["process"] == "web" and r["state"] == "running")
    asker = next(h for h in ("home-1", "home-2", "home-3") if h != web["node"])
    wrote = cc.vcapp(asker, "exec", APP, "--", "sh", "-c", 'echo "$MODE" > /exec-mark; cat /exec-mark; exit 4',
                     check=False)
    assert wrote.returncode == 4, (wrote.stdout, wrote.stderr)
    assert wrote.stdout.splitlines()[-1] == "prod"
    assert f"in instance {web['instance']} of {APP} on {web['node']}" in wrote.stdout
    again = cc.vcapp(asker, "exec", APP, "-i", web["instance"], "--", "sh", "-c", "cat /exec-mark; ps", check=False)
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert "prod" in again.stdout.splitlines() and "httpd" in again.stdout  # the same container, its server running
    fresh = cc.vcapp(asker, "run", APP, "--", "cat", "/exec-mark", check=False)
    assert fresh.returncode != 0  # a one-off container is a new one
    worker = cc.vcapp(asker, "exec", APP, "-i", "worker-0", "--", "ps", check=False)
    assert worker.returncode == 0 and "sleep" in worker.stdout, (worker.stdout, worker.stderr)
    missing = cc.vcapp(asker, "exec", APP, "-i", "7", "--", "true", check=False)
    assert missing.returncode != 0 and "has no instance '7'" in missing.stderr, missing.stderr
