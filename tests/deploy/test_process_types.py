"""Process types from a Procfile and vcapp.toml [processes]: every line is kept (web served,
release run once per release, the rest run without HTTP), and per-type scale counts are
checked before anything is sent."""

from __future__ import annotations

import re

import pytest

from buildpacks import procfile
from gitserver import DeployError
from vcapp.appconfig import AppConfigError, parse
from vcapp.deploy.pipeline import process_table
from vcapp.errors import BadRequest
from vcapp.state import apps

pytestmark = pytest.mark.unit

PROCFILE = """\
# every line counts
web: gunicorn app:app --bind :$PORT
worker: python worker.py --queue jobs
clock:   python clock.py
release: python manage.py migrate
"""


def tree(tmp_path, procfile_text: str | None = None):
    if procfile_text is not None:
        (tmp_path / "Procfile").write_text(procfile_text)
    return tmp_path


def test_every_procfile_line_is_a_process_type(tmp_path):
    assert procfile.processes(tree(tmp_path, PROCFILE)) == {
        "web": "gunicorn app:app --bind :$PORT", "worker": "python worker.py --queue jobs",
        "clock": "python clock.py", "release": "python manage.py migrate"}
    assert procfile.processes(tmp_path / "nothing-here") == {}


def test_the_release_table_holds_workers_and_the_release_command_apart(tmp_path):
    lines = []
    table, release = process_table(tree(tmp_path, PROCFILE), parse(""), lines.append)
    assert table == {"worker": ["sh", "-c", "python worker.py --queue jobs"], "clock": ["sh", "-c", "python clock.py"]}
    assert release == "python manage.py migrate"
    assert "-----> worker process: python worker.py --queue jobs (no HTTP; `vcapp scale APP worker=N`)" in lines


def test_vcapp_toml_processes_win_over_the_procfile(tmp_path):
    config = parse('[processes]\nworker = "python other.py"\nmailer = "python mail.py"\nrelease = "true"\n')
    table, release = process_table(tree(tmp_path, PROCFILE), config, lambda line: None)
    assert table["worker"] == ["sh", "-c", "python other.py"] and table["mailer"] == ["sh", "-c", "python mail.py"]
    assert release == "true"


def test_vcapp_toml_web_process_is_the_web_command():
    assert parse('[processes]\nweb = "busybox httpd -f"\n').spec()["command"] == ["sh", "-c", "busybox httpd -f"]


def test_no_procfile_no_types(tmp_path):
    assert process_table(tmp_path, parse(""), lambda line: None) == ({}, None)


@pytest.mark.parametrize("text, message", [
    ("Worker: x\n", "process type 'Worker' is not valid"),
    ("web: a\nworker x\n", "Procfile line 2 is not `name: command`"),
])
def test_a_bad_procfile_refuses_the_push(tmp_path, text, message):
    with pytest.raises(DeployError, match=message):
        process_table(tree(tmp_path, text), parse(""), lambda line: None)


@pytest.mark.parametrize("text, message", [
    ('[processes]\nWorker = "x"\n', "line 2: processes.Worker: is not a process type name"),
    ('[processes]\nworker = 3\n', "processes.worker: must be a command line"),
    ('[processes]\nworker = "  "\n', "processes.worker: must be a command line"),
    ('processes = "worker"\n', "processes: must be a table"),
])
def test_bad_processes_table_is_named(text, message):
    with pytest.raises(AppConfigError, match=message):
        parse(text)


@pytest.mark.parametrize("counts", [{"worker": 2}, {"web": 0, "worker": 100}, {"clock": "3"}])
def test_scale_counts(counts):
    assert apps.parse_scale_counts(counts) == {k: int(v) for k, v in counts.items()}


@pytest.mark.parametrize("counts, message", [
    ({"worker": 101}, "worker: count: must be between 0 (stopped) and 100"),
    ({"worker": 10**30}, "worker: count: must be between 0"),
    ({"worker": -1}, "worker: count: must be between 0"),
    ({"worker": "two"}, "worker: count: 'two' is not a whole number"),
    ({"worker": True}, "worker: count: must be between 0"),
    ({"Worker!": 1}, "process type 'Worker!' is not valid"),
    ({}, "give counts per process type"),
])
def test_absurd_scale_counts_are_refused(counts, message):
    with pytest.raises(BadRequest, match=re.escape(message)):
        apps.parse_scale_counts(counts)


@pytest.mark.parametrize("processes, message", [
    ({"release": {"command": ["true"]}}, "'release' is not a process type here"),
    ({"web": {"command": ["true"]}}, "'web' is not a process type here"),
    ({"worker": {"command": "python w.py"}}, "command: give a non-empty list"),
    ({"worker": {"command": ["w"], "count": 1000}}, "count: must be between 0"),
    ({f"w{i}": {"command": ["w"]} for i in range(11)}, "at most 10 process types"),
])
def test_bad_process_specs_are_refused(processes, message):
    with pytest.raises(BadRequest, match=re.escape(message)):
        apps.new_spec("shop", {"image": "x", "processes": processes})


def test_a_created_app_keeps_its_processes_counted_with_its_volumes():
    spec = apps.new_spec("shop", {"image": "x", "processes": {"worker": {"command": ["sh", "-c", "w"]}}})
    assert spec["processes"] == {"worker": {"command": ["sh", "-c", "w"], "count": 1}}
    with pytest.raises(BadRequest, match="runs 1 instance"):
        apps.new_spec("shop", {"image": "x", "processes": {"worker": {"command": ["w"]}},
                               "volumes": [{"source": "data", "destination": "/data"}]})


def test_release_command_runs_in_the_release_image_with_the_app_limits_and_an_env_file():
    from vcapp.deploy.release_phase import command_args, pull_args

    image = "10.0.0.1:5000/apps/shop@sha256:ab"
    assert pull_args(image, "/run/auth.json") == ["podman", "pull", "--authfile", "/run/auth.json", image]
    argv = command_args("shop", 7, image, "python manage.py migrate", "/run/e.env",
                        {"memory_mb": 256, "cpus": 0.5, "pids": 256})
    assert argv[:6] == ["podman", "run", "--rm", "--pull", "never", "--name"] and argv[6] == "vc-release-shop-7"
    assert argv[argv.index("--env-file") + 1] == "/run/e.env"
    assert argv[argv.index("--memory") + 1] == "256m" and argv[argv.index("--cpus") + 1] == "0.5"
    assert argv[-4:] == ["10.0.0.1:5000/apps/shop@sha256:ab", "sh", "-c", "python manage.py migrate"]
    assert "-v" not in argv
    with_volume = command_args("shop", 7, image, "migrate", "/run/e.env", {},
                               {"/var/lib/vcapp/volumes/shop/data": "/data"})
    assert with_volume[with_volume.index("-v") + 1] == "/var/lib/vcapp/volumes/shop/data:/data"


def test_a_job_sent_between_machines_is_checked_before_it_names_a_container():
    from vcapp.deploy.release_phase import Job
    from vcapp.errors import VcError

    job = Job.one_off("shop", 7)
    assert job.kind == "run" and job.name.startswith("vc-run-shop-") and Job.from_json(job.to_json()) == job
    assert Job.from_json(Job.release("shop", 7).to_json()).name == "vc-release-shop-7"
    for bad in ({**job.to_json(), "name": "vc-run-x; rm -rf /"}, {**job.to_json(), "kind": "shell"},
                {**job.to_json(), "timeout": 1e9}, {**job.to_json(), "name": "other-container"}):
        with pytest.raises(VcError):
            Job.from_json(bad)


def test_release_env_file_refuses_a_value_podman_cannot_carry():
    from vcapp.deploy.release_phase import ReleaseFailed, env_lines

    assert env_lines({"A": "1", "DATABASE_URL": "postgres://x"}) == "A=1\nDATABASE_URL=postgres://x\n"
    with pytest.raises(ReleaseFailed, match="B contains a newline"):
        env_lines({"B": "x\ny"})


class Reports:
    """The two prefixes check_instances reads, as a store would answer them."""

    def __init__(self, assigned: dict[str, str], reports: list[dict]):
        from vcapp.state import keys
        from vcapp.state.store import Entry

        self.entries = {keys.assign("shop"): [Entry(f"a/{i}", {"instance": i, "node": n}, 1, 1, 0)
                                              for i, n in assigned.items()],
                        keys.STATUS: [Entry(keys.status(r["node"], r["app"], r["instance"]), r, 1, 1, 0)
                                      for r in reports]}

    def list(self, prefix: str):
        return self.entries.get(prefix, [])


def test_a_healthy_worker_does_not_count_as_a_serving_web_instance():
    from vcapp.deploy.pipeline import check_instances

    rep = {"app": "shop", "release": "2.0", "state": "running", "health": "healthy"}
    store = Reports({"0": "home-1", "worker-0": "home-2"},
                    [dict(rep, instance="worker-0", node="home-2", process="worker")])
    assert check_instances(store, "shop", "2.0") == ([], None)
    store = Reports({"0": "home-1", "worker-0": "home-2"},
                    [dict(rep, instance="worker-0", node="home-2", process="worker", state="failed", health="-",
                          message="exited 1"), dict(rep, instance="0", node="home-1", process="web")])
    assert check_instances(store, "shop", "2.0") == (["instance 0 on home-1: healthy (check passed)"],
                                                     "instance worker-0 on home-2: exited 1")
