"""Pure parts of the builder: the buildah command line, image names, registry config."""

from __future__ import annotations

import subprocess

import pytest

from buildpacks.stacks import CA_BUNDLE
from builder import proc, registry
from builder.build import LayerCache, Limits, Proxy, bud_command, cache_repository, image_ref

pytestmark = pytest.mark.unit


def test_image_ref_is_registry_apps_app_release():
    assert image_ref("10.1.0.12:5000", "blog", 7) == "10.1.0.12:5000/apps/blog:7"
    assert image_ref(None, "blog", 7) == "localhost/apps/blog:7"


@pytest.mark.parametrize("app", ["Blog", "-x", "a_b", "x" * 64, ""])
def test_image_ref_rejects_bad_app_names(app):
    with pytest.raises(ValueError, match="lowercase letters"):
        image_ref("r:5000", app, 1)


def test_bud_command_limits_cache_and_ca(tmp_path):
    argv = bud_command(tmp_path, tmp_path / "Containerfile", "r/apps/a:1", Limits(cpus=0.5, memory="256m"),
                       "/vcapp/x/build-a-1", tmp_path / "ignore")
    joined = " ".join(argv)
    assert argv[:2] == ["buildah", "bud"] and argv[-1] == str(tmp_path)
    for flag in ("--layers", "--pull-never", "--cpu-quota 50000", "--cpu-period 100000", "--memory 256m",
                 "--memory-swap 256m", "--cgroup-parent /vcapp/x/build-a-1", f"--ignorefile {tmp_path}/ignore",
                 f"/etc/ssl/certs/ca-certificates.crt:{CA_BUNDLE}:ro", "-t r/apps/a:1"):
        assert flag in joined
    nofile = argv[argv.index("--ulimit") + 1]
    assert nofile.startswith("nofile=") and int(nofile.split("=")[1].split(":")[0]) <= 16384


def test_bud_command_shares_step_layers_through_the_cluster_registries(tmp_path):
    plain = bud_command(tmp_path, tmp_path / "Containerfile", "r/apps/a:1", Limits())
    assert not [a for a in plain if a.startswith("--cache")]
    cache = LayerCache(cache_repository("10.0.0.1:5000", "a"), (cache_repository("10.0.0.2:5000", "a"),))
    argv = bud_command(tmp_path, tmp_path / "Containerfile", "r/apps/a:1", Limits(), cache=cache,
                       authfile=tmp_path / "auth.json")
    joined = " ".join(argv)
    assert "--cache-to 10.0.0.1:5000/cache/a" in joined and "--cache-from 10.0.0.2:5000/cache/a" in joined
    assert f"--authfile {tmp_path}/auth.json" in joined and "--layers" in argv and argv[-1] == str(tmp_path)
    with pytest.raises(ValueError, match="lowercase letters"):
        cache_repository("10.0.0.1:5000", "../apps/other")


def test_bud_command_gives_build_steps_the_proxy_and_what_bypasses_it_never_in_argv(tmp_path):
    plain = bud_command(tmp_path, tmp_path / "Containerfile", "r/apps/a:1", Limits())
    assert plain[0] == "buildah" and "--build-arg" not in plain  # no proxy: build steps go direct
    proxy = Proxy("http://me:s3cret@198.51.100.1:8888", no_proxy=("10.1.0.12", "100.96.0.0/16"))
    env_file = proc.write_env_file(tmp_path / "proxy.env", proxy.environment())
    argv = bud_command(tmp_path, tmp_path / "Containerfile", "r/apps/a:1", Limits(), proxy_env=env_file)
    assert "s3cret" not in " ".join(argv) and "--build-arg" not in argv  # argv is public on a machine
    assert argv[-1] == str(tmp_path) and argv[argv.index("buildah") - 1] == str(env_file)
    assert env_file.stat().st_mode & 0o777 == 0o600
    # What buildah's environment gets, read back by the shell the argv starts with:
    shown = subprocess.run([*argv[:argv.index("buildah")], "env"], capture_output=True, text=True, check=True).stdout
    seen = dict(line.split("=", 1) for line in shown.splitlines() if "proxy" in line.lower().split("=", 1)[0])
    bypass = "localhost,127.0.0.1,::1,10.1.0.12,100.96.0.0/16"
    url = "http://me:s3cret@198.51.100.1:8888"
    assert seen == {"HTTP_PROXY": url, "HTTPS_PROXY": url, "NO_PROXY": bypass,
                    "http_proxy": url, "https_proxy": url, "no_proxy": bypass}
    assert "s3cret" not in repr(proxy)  # never in a log line or a traceback


def test_registry_config_filesystem_serves_blobs_itself(tmp_path):
    cfg = registry.config("10.1.0.12:5000", registry.FilesystemStorage(tmp_path))
    assert cfg["http"]["addr"] == "10.1.0.12:5000"
    assert cfg["storage"]["filesystem"] == {"rootdirectory": str(tmp_path)}
    assert cfg["storage"]["redirect"] == {"disable": True}


def test_registries_conf_marks_the_address_insecure():
    text = registry.registries_conf("10.1.0.12:5000")
    assert 'location = "10.1.0.12:5000"' in text and "insecure = true" in text
