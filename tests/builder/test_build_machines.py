"""Builds on simulated machines (no internet there): buildpack and Dockerfile apps are built
with real buildah, pushed to the registry on another machine, pulled, run and asked."""

from __future__ import annotations

import threading
import time

import pytest

from builder import stacks
from builder.build import Limits, build
from builder.errors import BuildError, BuildTimeout, NothingToBuild
from buildpacks.stacks import STACKS
from tests.builder.conftest import APP_PORT, HELLO_PY, wait_http, write_tree

pytestmark = pytest.mark.cluster

STACK_LINE = "-----> "


def recording(machine, started: list[list[str]]):
    def spawn(argv, **kw):
        started.append(list(argv))
        return machine.spawn(argv, **kw)
    return spawn


def test_a_stack_is_shared_through_the_cluster_registry(sim, home1, home2, cluster_registry, tmp_path):
    """home-1 lacks the python stack: it loads it from the archive cache and pushes it to the
    cluster registry; home-2 then pulls it from there, with no archive and no debootstrap."""
    python = STACKS["python"]
    for machine in (home1, home2):
        assert machine.podman("image", "exists", python.image, check=False).returncode == 1  # a fresh storage
    share = stacks.Share((cluster_registry,))
    tree = write_tree(tmp_path / "first", {"requirements.txt": "", "app.py": HELLO_PY})
    lines1: list[str] = []
    build(tree, "first", 1, None, on_line=lines1.append, stacks_from=share, **home1.build_kwargs())
    said1 = [l for l in lines1 if l.startswith(STACK_LINE)]
    assert f"-----> pulling stack python (bookworm) from the cluster registry ({cluster_registry})" in said1
    assert any(l.startswith("-----> loading stack python (bookworm) from /") for l in said1), said1
    assert any(l.startswith(f"-----> pushed stack python (bookworm) to the cluster registry at {cluster_registry}")
               for l in said1), said1
    tags = wait_http(sim, "home-1", f"http://{cluster_registry}/v2/stacks/python/tags/list")
    assert f'"{python.suite}-{python.key}"' in tags

    started: list[list[str]] = []
    empty_cache = tmp_path / "no-archives"
    lines2: list[str] = []
    result = build(write_tree(tmp_path / "second", {"requirements.txt": "", "app.py": HELLO_PY}), "second", 1,
                   None, on_line=lines2.append, stacks_from=share, stack_cache=empty_cache,
                   spawn=recording(home2, started), cgroup_parent=home2.cgroup)
    said2 = [l for l in lines2 if l.startswith(STACK_LINE)]
    assert any(l.startswith(f"-----> pulled stack python (bookworm) from {cluster_registry}: ") for l in said2), said2
    assert not any("loading stack" in l or "making stack" in l or "pushed stack" in l for l in said2), said2
    assert not any(argv[:2] == ["podman", "load"] for argv in started)
    assert not empty_cache.exists()  # no archive looked for, none made
    print("\n".join(l for l in said1 + said2 if "stack" in l))  # the numbers, with -s

    home2.serve(result.image, "second-1", port=APP_PORT + 3)
    assert wait_http(sim, "home-1", f"http://{home2.addr}:{APP_PORT + 3}/") == "hello from python on port 8080\n"


def test_two_machines_needing_a_missing_stack_at_once_load_it_once(home1, home2, cluster_registry, tmp_path):
    """Under the Share's lock (vcapp passes an etcd lease; here a thread lock), the second
    machine waits for the first, then pulls what it pushed."""
    static = STACKS["static"]
    for machine in (home1, home2):
        assert machine.podman("image", "exists", static.image, check=False).returncode == 1
    lock = threading.Lock()
    lost = f"{home1.addr.rsplit('.', 1)[0]}.250:5000"  # a machine of the LAN that is gone: skipped in seconds
    share = stacks.Share((cluster_registry, lost), None, lambda name: lock)
    logs: dict[str, list[str]] = {"home-1": [], "home-2": []}
    errors: list[BaseException] = []

    def site(machine) -> None:
        tree = write_tree(tmp_path / machine.name, {"index.html": f"<h1>{machine.name}</h1>\n"})
        try:
            build(tree, "twosites", 1, None, on_line=logs[machine.name].append, stacks_from=share,
                  **machine.build_kwargs())
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=site, args=(m,)) for m in (home1, home2)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert time.monotonic() - start < 60, "a lost registry costs seconds, not connect timeouts"
    assert not errors, errors
    said = [l for lines in logs.values() for l in lines if "stack static" in l]
    assert sum(l.startswith("-----> loading stack static (bookworm)") for l in said) == 1, said
    assert sum(l.startswith("-----> pushed stack static (bookworm)") for l in said) == 1, said
    assert sum(l.startswith(f"-----> pulled stack static (bookworm) from {cluster_registry}") for l in said) == 1, said
    assert f"-----> the registry at {lost} does not answer within 3 s: skipped" in logs["home-1"]


def test_python_app_built_on_home1_runs_on_home2_from_the_registry(sim, home1, home2, cluster_registry, tmp_path):
    tree = write_tree(tmp_path / "hello", {"requirements.txt": "", "app.py": HELLO_PY})
    lines: list[str] = []
    result = build(tree, "hello", 1, cluster_registry, on_line=lines.append, **home1.build_kwargs())

    assert result.image == f"{cluster_registry}/apps/hello:1" and result.language == "python"
    assert result.digest.startswith("sha256:")
    assert "-----> python app detected" in lines and any(l.startswith("STEP ") for l in lines)
    tags = wait_http(sim, "home-1", f"http://{cluster_registry}/v2/apps/hello/tags/list")
    assert '"1"' in tags

    home2.podman("pull", "--tls-verify=false", result.image)
    home2.serve(result.image, "hello-1")
    body = wait_http(sim, "home-1", f"http://{home2.addr}:{APP_PORT}/")
    assert body == "hello from python on port 8080\n"


def test_static_site_is_served_by_busybox(sim, home1, tmp_path):
    tree = write_tree(tmp_path / "site", {"index.html": "<h1>static ok</h1>\n", "css/a.css": "h1{}",
                                          ".git/config": "[remote]\n", "secret.txt": "not for the web",
                                          ".dockerignore": "secret.txt\n"})
    result = build(tree, "site", 1, None, **home1.build_kwargs())
    assert result.language == "static"
    home1.serve(result.image, "site-1", port=APP_PORT + 1)
    site = f"http://{home1.addr}:{APP_PORT + 1}"
    assert wait_http(sim, "home-2", f"{site}/") == "<h1>static ok</h1>\n"
    assert wait_http(sim, "home-2", f"{site}/css/a.css") == "h1{}"
    for hidden in ("/.git/config", "/secret.txt"):  # VCS dirs and .dockerignore'd files stay out
        status = sim.fetch(f"{site}{hidden}", "-o", "/dev/null", "-w", "%{http_code}", host="home-2").stdout
        assert status == "404", hidden


DOCKERFILE = f"""\
FROM {STACKS['static'].alias}
RUN echo first-step-output && sleep 3 && echo after-three-seconds
COPY page.txt /www/index.html
CMD ["/bin/sh", "-c", "exec httpd -f -p 0.0.0.0:$PORT -h /www"]
"""


def test_dockerfile_app_built_as_is_with_log_streamed_live(sim, home1, tmp_path):
    tree = write_tree(tmp_path / "df", {"Dockerfile": DOCKERFILE, "page.txt": "from a Dockerfile\n",
                                        "index.html": "not used: a Dockerfile wins"})
    arrivals: dict[str, float] = {}

    def on_line(line: str) -> None:
        arrivals.setdefault(line, time.monotonic())

    result = build(tree, "dfapp", 3, None, on_line=on_line, **home1.build_kwargs())
    done = time.monotonic()
    assert result.language == "dockerfile"
    # the first line of the step reached us while the step still ran, not at the end
    assert arrivals["after-three-seconds"] - arrivals["first-step-output"] >= 2.5
    assert done - arrivals["first-step-output"] >= 2.5
    home1.serve(result.image, "dfapp-3", port=APP_PORT + 2)
    assert wait_http(sim, "home-2", f"http://{home1.addr}:{APP_PORT + 2}/") == "from a Dockerfile\n"


def test_rebuild_of_unchanged_tree_uses_the_layer_cache(home1, tmp_path):
    tree = write_tree(tmp_path / "cached", {"requirements.txt": "", "app.py": HELLO_PY})
    build(tree, "cached", 1, None, **home1.build_kwargs())
    lines: list[str] = []
    again = build(tree, "cached", 2, None, on_line=lines.append, **home1.build_kwargs())
    assert sum("Using cache" in l for l in lines) >= 4
    assert again.seconds < 20


def test_tree_with_nothing_to_build_starts_nothing(home1, tmp_path):
    tree = write_tree(tmp_path / "empty", {"README.md": "just docs\n"})
    started: list[list[str]] = []

    def spawn(argv, **kw):
        started.append(argv)
        return home1.spawn(argv, **kw)

    with pytest.raises(NothingToBuild) as err:
        build(tree, "empty", 1, None, spawn=spawn, cgroup_parent=home1.cgroup)
    assert "no Dockerfile, Containerfile, requirements.txt" in str(err.value)
    assert "index.html at the top of the tree: add one" in str(err.value)
    assert started == []


def test_broken_dockerfile_fails_with_the_log_tail(home1, tmp_path):
    tree = write_tree(tmp_path / "broken", {"Dockerfile": f"FROM {STACKS['static'].alias}\n"
                                            "RUN echo compiling the thing && no-such-tool --go\n"})
    with pytest.raises(BuildError) as err:
        build(tree, "broken", 1, None, **home1.build_kwargs())
    message = str(err.value)
    assert "build failed" in message and "fix the failing step" in message
    assert "compiling the thing" in message and "no-such-tool" in message
    assert err.value.tail and not isinstance(err.value, BuildTimeout)


def test_dockerfile_from_an_unreachable_registry_fails_in_seconds_naming_image_and_registry(home1, tmp_path):
    """home-1 has no way out (no proxy, no mirror): the pull fails at once, without retries."""
    tree = write_tree(tmp_path / "public", {"Dockerfile": "FROM python:3.12\nRUN echo never-built\n"})
    start = time.monotonic()
    with pytest.raises(BuildError) as err:
        build(tree, "public", 1, None, **home1.build_kwargs())
    assert time.monotonic() - start < 30
    message = err.value.reason
    assert message.startswith("cannot pull docker.io/library/python:3.12 from registry-1.docker.io: ")
    assert "vcapp registries add docker.io --mirror URL" in message
    assert "never-built" not in str(err.value)


def test_build_over_its_time_limit_is_killed(home1, tmp_path):
    tree = write_tree(tmp_path / "slow", {"Dockerfile": f"FROM {STACKS['static'].alias}\n"
                                          "RUN echo starting-slow-step && sleep 600\n"})
    start = time.monotonic()
    with pytest.raises(BuildTimeout) as err:
        build(tree, "slow", 1, None, limits=Limits(seconds=5), **home1.build_kwargs())
    assert time.monotonic() - start < 30
    assert "time limit of 5 s" in str(err.value) and "starting-slow-step" in str(err.value)
    assert "sleep 600" not in home1.processes()


def test_build_steps_get_cpu_and_memory_limits(home1, tmp_path):
    probe = write_tree(tmp_path / "limits", {"Dockerfile": f"FROM {STACKS['static'].alias}\n"
                       "RUN echo quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) "
                       "mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)\n"})
    lines: list[str] = []
    build(probe, "limits", 1, None, on_line=lines.append, limits=Limits(cpus=0.5, memory="128m"),
          **home1.build_kwargs())
    assert f"quota=50000 mem={128 * 1024 * 1024}" in lines

    hog = write_tree(tmp_path / "hog", {"Dockerfile": f"FROM {STACKS['python'].alias}\n"
                     "RUN python3 -c \"b = bytearray(400 * 1024 * 1024); print('allocated', len(b))\"\n"})
    with pytest.raises(BuildError) as err:
        build(hog, "hog", 1, None, limits=Limits(memory="128m"), **home1.build_kwargs())
    assert "memory limit (128m)" in str(err.value)
    assert f"allocated {400 * 1024 * 1024}" not in err.value.tail


def test_a_log_reader_that_fails_stops_the_build(home1, tmp_path):
    """When the pusher goes away (the log callback raises), the build does not run on."""
    tree = write_tree(tmp_path / "gone", {"Dockerfile": f"FROM {STACKS['static'].alias}\n"
                                          "RUN echo gone-soon && sleep 300\n"})

    def on_line(line: str) -> None:
        if line == "gone-soon":
            raise BrokenPipeError("client disconnected")

    start = time.monotonic()
    with pytest.raises(BrokenPipeError):
        build(tree, "gone", 1, None, on_line=on_line, **home1.build_kwargs())
    assert time.monotonic() - start < 30
    assert "sleep 300" not in home1.processes()
