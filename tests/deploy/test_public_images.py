"""A Dockerfile FROM a public image, pulled through a registry mirror on the simulated internet.

The "internet" has one container registry: a `docker-registry` started here on the client
host (203.0.113.100:5000, plain HTTP), serving the tiny busybox image (builder/baseimage.py)
under the public-looking name library/alpine:3.19. The cluster (one machine, home-1, behind
its site's NAT) is told `vcapp registries add docker.io --mirror http://203.0.113.100:5000
--insecure`; an app whose Dockerfile says `FROM alpine:3.19` and `EXPOSE 5678`, with no
vcapp.toml, is pushed with git, built, released and asked on its port. A `FROM nosuch:1`
fails at once, naming the image and the registry. Nothing here reaches a real address: the
machines have no way out but the backbone, and the only registry on it is ours.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from builder import registry as reg
from builder.baseimage import tiny_build_command, tiny_context
from tests.control.conftest import ControlCluster
from tests.deploy.test_git_push_deploy import commit, git, remote_lines

pytestmark = pytest.mark.cluster

APP = "alpined"
MIRROR_HOST = "client"
MIRROR = "203.0.113.100:5000"
BASE = f"{MIRROR}/library/alpine:3.19"
PORT = 5678  # not the default 8080: only EXPOSE can have set it
PUSH_TIMEOUT = 300  # a 2 MB base image from the mirror and one RUN step
SERVE_TIMEOUT = 90  # placer + image pull + start + TCP check, on a loaded host
# A FROM that cannot be pulled: the mirror says "manifest unknown" at once; docker.io itself
# is a black hole here (its name lookup times out), which the pull's start limit cuts short.
FAIL_FAST_S = 40

DOCKERFILE = f"""\
FROM alpine:3.19
RUN mkdir -p /www && echo "served from a public base image" > /www/index.html
EXPOSE {PORT}
CMD ["httpd", "-f", "-p", "{PORT}", "-h", "/www"]
"""


@pytest.fixture(scope="module")
def cluster(make_sim, tmp_path_factory):
    sim = make_sim(home=1, office=0)
    # The public registry: on the client host, holding the tiny image as library/alpine:3.19.
    store = tmp_path_factory.mktemp("mirror")
    config = reg.write_config(store / "config.yml", MIRROR, reg.FilesystemStorage(store / "data"))
    (store / "data").mkdir()
    sim.spawn(MIRROR_HOST, *reg.serve_command(config), log=store / "registry.log")
    sim.run(MIRROR_HOST, *tiny_build_command(tiny_context(tmp_path_factory.mktemp("tiny")), BASE), timeout=300)
    deadline = time.monotonic() + 30
    while sim.run(MIRROR_HOST, "curl", "-sf", "--max-time", "2", f"http://{MIRROR}/v2/", check=False).returncode:
        assert time.monotonic() < deadline, (store / "registry.log").read_text()
        time.sleep(0.2)
    sim.run(MIRROR_HOST, "buildah", "push", "--tls-verify=false", BASE, f"docker://{BASE}", timeout=120)
    cc = ControlCluster(sim, ["home-1"])
    cc.boot_daemons()
    cc.init("home-1")
    cc.wait(lambda: len(cc.all_up() or {}) == 1, 60, "home-1 up")
    cc.vcapp("home-1", "apps", "create", APP)
    return cc


@pytest.fixture(scope="module")
def repo(cluster, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("laptop") / APP
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    return path


def push(cc: ControlCluster, repo: Path) -> subprocess.CompletedProcess:
    url = f"http://admin:{cc.admin_token}@{cc.sim.addr('home-1')}:7180/git/{APP}.git"
    return cc.sim.run("home-1", "git", "-C", str(repo), "push", url, "main", check=False, timeout=PUSH_TIMEOUT)


def registries(cc: ControlCluster) -> list[dict]:
    return json.loads(cc.vcapp("home-1", "registries", "list", "--json").stdout)


def dropin(cc: ControlCluster) -> Path:
    return cc.sim.dc.host_dir("home-1") / "home" / ".config" / "containers" / "registries.conf.d" / \
        "51-vcapp-registries.conf"


def answer(cc: ControlCluster) -> str | None:
    """What the app answers on its own machine's loopback (where containers publish)."""
    for inst in json.loads(cc.vcapp("home-1", "ps", APP, "--json").stdout):
        if inst.get("state") == "running" and inst.get("host_port"):
            got = cc.sim.run(inst["node"], "curl", "-sf", "--max-time", "3",
                             f"http://127.0.0.1:{inst['host_port']}/", check=False)
            if got.returncode == 0:
                return got.stdout.strip()
    return None


def test_registries_add_checks_its_input_and_never_shows_the_password(cluster):
    cc = cluster
    bad = cc.vcapp("home-1", "registries", "add", "docker.io/library", "--mirror", f"http://{MIRROR}", check=False)
    assert bad.returncode != 0 and "is not a host name" in bad.stderr
    bad = cc.vcapp("home-1", "registries", "add", "docker.io", "--mirror", "ftp://x", check=False)
    assert bad.returncode != 0 and "is not a registry URL" in bad.stderr
    assert registries(cc) == [], "a refused add stores nothing"

    added = cc.sim.run("home-1", "vcapp", "registries", "add", "ghcr.io", "--username", "robot",
                       "--password-stdin", input="hunter2-token\n")
    assert "ghcr.io: no mirror, user robot (password set)" in added.stdout
    [shown] = registries(cc)
    assert shown["host"] == "ghcr.io" and shown["username"] == "robot" and shown["password"] is True
    listed = cc.vcapp("home-1", "registries", "list").stdout + json.dumps(registries(cc))
    assert "hunter2" not in listed
    stored = cc.etcd("home-1", "get", "/vc/settings/registries/ghcr.io", "--print-value-only").stdout
    assert "hunter2" not in stored, "the password is sealed in etcd"
    auth = cc.sim.dc.run_dir("home-1") / "registry" / "auth.json"
    cc.wait(lambda: "ghcr.io" in json.loads(auth.read_text())["auths"], 15, "ghcr.io in home-1's auth file")
    assert oct(auth.stat().st_mode & 0o777) == "0o600"
    cc.vcapp("home-1", "registries", "remove", "ghcr.io")
    assert registries(cc) == []
    cc.wait(lambda: "ghcr.io" not in json.loads(auth.read_text())["auths"], 15, "ghcr.io gone from the auth file")
    missing = cc.vcapp("home-1", "registries", "remove", "ghcr.io", check=False)
    assert missing.returncode != 0 and "no settings for registry ghcr.io" in missing.stderr


def test_dockerfile_from_a_short_name_builds_through_the_mirror_and_serves_on_its_exposed_port(cluster, repo):
    cc = cluster
    cc.vcapp("home-1", "registries", "add", "docker.io", "--mirror", f"http://{MIRROR}", "--insecure")
    assert [(r["host"], r["mirror"], r["insecure"]) for r in registries(cc)] == [("docker.io", MIRROR, True)]
    cc.wait(lambda: dropin(cc).is_file() and f'location = "{MIRROR}"' in dropin(cc).read_text(), 15,
            "home-1's node daemon to write the mirror drop-in")

    commit(repo, {"Dockerfile": DOCKERFILE}, "from alpine")
    start = time.monotonic()
    proc = push(cc, repo)
    lines = remote_lines(proc)
    assert proc.returncode == 0, proc.stderr
    assert "-----> pulling base image docker.io/library/alpine:3.19" in lines
    assert f"-----> no vcapp.toml: port {PORT} (EXPOSE in Dockerfile), TCP health check" in lines
    assert any(l.startswith("-----> Released v1") for l in lines), proc.stderr
    print(f"push -> released through the mirror: {time.monotonic() - start:.1f} s")
    cc.wait(lambda: answer(cc) == "served from a public base image", SERVE_TIMEOUT, "the app to answer on its port")
    [inst] = json.loads(cc.vcapp("home-1", "ps", APP, "--json").stdout)
    ports = cc.sim.run(inst["node"], "podman", "ps", "--format", "{{.Ports}}").stdout
    assert f"->{PORT}/tcp" in ports, ports


def test_a_from_that_cannot_be_pulled_fails_in_seconds_naming_image_and_registry(cluster, repo):
    cc = cluster
    commit(repo, {"Dockerfile": "FROM nosuch:1\nRUN echo never-built\n"}, "from nowhere")
    start = time.monotonic()
    proc = push(cc, repo)
    seconds = time.monotonic() - start
    assert proc.returncode != 0
    assert seconds < FAIL_FAST_S, f"the push took {seconds:.0f} s"
    assert "cannot pull docker.io/library/nosuch:1 from registry-1.docker.io: " in proc.stderr
    assert "vcapp registries add docker.io --mirror URL" in proc.stderr
    assert f"{MIRROR}/library/nosuch:1: " in proc.stderr and "manifest unknown" in proc.stderr, "the mirror's answer"
    assert "never-built" not in proc.stderr
    print(f"unpullable FROM refused in {seconds:.1f} s")
    assert json.loads(cc.vcapp("home-1", "releases", APP, "--json").stdout)["current"] == 1
