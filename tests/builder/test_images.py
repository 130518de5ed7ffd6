"""Base image names as Docker resolves them, the FROM rewrite, and the pull's command line."""

from __future__ import annotations

import pytest

from builder import images, proc

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("ref, full", [
    ("node:20", "docker.io/library/node:20"),
    ("alpine", "docker.io/library/alpine:latest"),
    ("user/img", "docker.io/user/img:latest"),
    ("user/img:1.2", "docker.io/user/img:1.2"),
    ("docker.io/library/python:3.12", "docker.io/library/python:3.12"),
    ("ghcr.io/owner/tool:v1", "ghcr.io/owner/tool:v1"),
    ("registry.example:5000/team/app", "registry.example:5000/team/app:latest"),
    ("203.0.113.100:5000/base:1", "203.0.113.100:5000/base:1"),
    ("localhost/vcapp/stack-python:bookworm", "localhost/vcapp/stack-python:bookworm"),
    (f"alpine@{DIGEST}", f"docker.io/library/alpine@{DIGEST}"),
    ("quay.io/a/b/c:2", "quay.io/a/b/c:2"),
])
def test_short_names_resolve_like_docker(ref, full):
    assert images.resolve(ref) == full


def test_registry_of_names_docker_hubs_api_host():
    assert images.registry_of("docker.io/library/node:20") == "registry-1.docker.io"
    assert images.registry_of("ghcr.io/o/x:1") == "ghcr.io"


def test_rewrite_resolves_from_lines_and_lists_what_to_pull():
    text = ("# syntax comment FROM nothing\n"
            "ARG BASE=alpine:3.19\n"
            "FROM --platform=linux/amd64 node:20 AS build\n"
            "RUN npm ci\n"
            "from build as test\n"
            "FROM ${BASE}\n"
            "FROM scratch\n"
            "FROM localhost/vcapp/stack-python:bookworm\n"
            "FROM alpine:3.19\r\n"
            "COPY --from=build /app /app\n"
            "FROM node:20\n"
            "EXPOSE 8080\n")
    out = images.rewrite(text)
    assert out.pulls == ("docker.io/library/node:20", "docker.io/library/alpine:3.19")
    assert out.text.splitlines(keepends=True) == [
        "# syntax comment FROM nothing\n",
        "ARG BASE=alpine:3.19\n",
        "FROM --platform=linux/amd64 docker.io/library/node:20 AS build\n",
        "RUN npm ci\n",
        "from build as test\n",
        "FROM ${BASE}\n",
        "FROM scratch\n",
        "FROM localhost/vcapp/stack-python:bookworm\n",
        "FROM docker.io/library/alpine:3.19\r\n",
        "COPY --from=build /app /app\n",
        "FROM docker.io/library/node:20\n",
        "EXPOSE 8080\n",
    ]


def test_pull_command_has_no_retries_and_no_password(tmp_path):
    env_file = proc.write_env_file(tmp_path / "proxy.env", [("HTTPS_PROXY", "http://me:pw@proxy:3128")])
    argv = images.pull_command("docker.io/library/alpine:3.19", "/run/vcapp/registry/auth.json", env_file)
    assert argv[argv.index("buildah"):] == [
        "buildah", "--log-level", "debug", "pull", "--retry", "0", "--policy", "missing",
        "--authfile", "/run/vcapp/registry/auth.json", "docker.io/library/alpine:3.19"]
    assert "pw@" not in " ".join(argv)  # the proxy's login comes from the 0600 file


def test_failure_names_image_registry_reason_and_the_mirror_command():
    reason = images.why(["Trying to pull docker.io/library/nosuch:1...",
                         'Error: initializing source docker://nosuch:1: reading manifest 1 in '
                         'docker.io/library/nosuch: manifest unknown'])
    assert reason == ("initializing source docker://nosuch:1: reading manifest 1 in docker.io/library/nosuch: "
                      "manifest unknown")
    assert images.failure_message("docker.io/library/nosuch:1", reason) == (
        "cannot pull docker.io/library/nosuch:1 from registry-1.docker.io: " + reason +
        "; add a mirror with `vcapp registries add docker.io --mirror URL` if this machine cannot reach it")


def test_a_pulls_debug_lines_stay_out_of_the_log_but_name_the_mirrors_that_failed():
    shown: list[str] = []
    run = images._Pull(None, shown.append)
    for line in ['time="2026-12-02T06:40:00Z" level=debug msg="Trying to access \\"m.lan:5000/library/x:1\\""',
                 'time="2026-12-02T06:40:00Z" level=debug msg="Accessing \\"m.lan:5000/library/x:1\\" failed: '
                 'reading manifest 1 in m.lan:5000/library/x: manifest unknown"',
                 "Trying to pull docker.io/library/x:1..."]:
        run.line(line)
    assert shown == ["Trying to pull docker.io/library/x:1..."]
    assert run.attempts == ["m.lan:5000/library/x:1: reading manifest 1 in m.lan:5000/library/x: manifest unknown"]
    assert not run.started.is_set()
    run.line("Getting image source signatures")
    assert run.started.is_set()
