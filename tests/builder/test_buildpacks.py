"""Detection and Containerfile output of the buildpacks (pure: files in a temp dir, no build)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from buildpacks import procfile
from buildpacks.packs import DetectError, detect, looked_for, stacks_named
from buildpacks.stacks import STACKS

pytestmark = pytest.mark.unit

FLASK_APP = "from flask import Flask\napp = Flask(__name__)\n"


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def cmd_line(containerfile: str) -> list[str]:
    line = next(l for l in containerfile.splitlines() if l.startswith("CMD "))
    return json.loads(line[4:])


def test_empty_tree_says_what_was_looked_for(tmp_path):
    tree(tmp_path, {"README.md": "hello"})
    with pytest.raises(DetectError) as err:
        detect(tmp_path)
    message = str(err.value)
    for name in ("Dockerfile", "requirements.txt", "package.json", "go.mod", "index.html"):
        assert name in message
    assert "add one" in message


def test_dockerfile_wins_over_buildpacks(tmp_path):
    tree(tmp_path, {"Dockerfile": "FROM localhost/vcapp/stack-python:bookworm\n", "requirements.txt": "flask\n"})
    plan = detect(tmp_path)
    assert plan.language == "dockerfile"
    assert plan.dockerfile == tmp_path / "Dockerfile"
    assert plan.containerfile is None
    assert plan.stacks == ("python",)


def test_containerfile_is_a_dockerfile(tmp_path):
    tree(tmp_path, {"Containerfile": "FROM scratch\n", "index.html": "hi"})
    plan = detect(tmp_path)
    assert plan.dockerfile == tmp_path / "Containerfile"
    assert plan.stacks == ()


def test_stacks_named_reads_from_lines_by_alias_and_exact_tag():
    text = (f"FROM {STACKS['go'].alias} AS build\nRUN go build\n"
            f"from --platform=linux/amd64 {STACKS['static'].image}\nFROM debian:bookworm\n")
    assert stacks_named(text) == ("go", "static")


def test_python_gunicorn_requirements(tmp_path):
    tree(tmp_path, {"requirements.txt": "Flask==3.0.0\ngunicorn>=22\n", "app.py": FLASK_APP})
    plan = detect(tmp_path)
    assert plan.language == "python" and plan.stacks == ("python",)
    text = plan.containerfile
    assert text.startswith(f"FROM {STACKS['python'].image}\n")
    # dependencies are installed before the source is copied: edits reuse the install layer
    assert text.index("COPY requirements.txt") < text.index("pip install") < text.index("COPY . .")
    assert cmd_line(text) == ["/bin/sh", "-c", "exec gunicorn --bind 0.0.0.0:$PORT --access-logfile - app:app"]


def test_django_project_collects_its_static_files_at_build(tmp_path):
    tree(tmp_path, {"requirements.txt": "Django>=4.2\ngunicorn\nwhitenoise\n", "manage.py": "",
                    "Procfile": "web: gunicorn mysite.wsgi\n"})
    text = detect(tmp_path).containerfile
    # after the source is in (settings and app static dirs), before the image's command
    assert text.index("COPY . .") < text.index("RUN python manage.py collectstatic --noinput\n") < text.index("CMD ")


@pytest.mark.parametrize("files", [
    {"requirements.txt": "flask\n", "app.py": FLASK_APP, "manage.py": ""},  # a manage.py, no Django
    {"requirements.txt": "django\n", "app.py": FLASK_APP},  # Django, no project at the top
])
def test_no_collectstatic_without_a_django_project(tmp_path, files):
    assert "collectstatic" not in detect(tree(tmp_path, files)).containerfile


def test_python_uvicorn_pyproject(tmp_path):
    tree(tmp_path, {"pyproject.toml": '[project]\nname = "x"\ndependencies = ["fastapi", "uvicorn[standard]"]\n',
                    "main.py": "from fastapi import FastAPI\napp = FastAPI()\n"})
    plan = detect(tmp_path)
    assert plan.command == "uvicorn --host 0.0.0.0 --port $PORT main:app"
    assert "RUN pip install --no-cache-dir ." in plan.containerfile


def test_python_pipfile_with_lock_deploys(tmp_path):
    tree(tmp_path, {"Pipfile": '[packages]\nflask = "*"\n', "Pipfile.lock": "{}", "app.py": FLASK_APP})
    plan = detect(tmp_path)
    assert "pipenv install --system --deploy" in plan.containerfile
    assert plan.command == "flask --app app:app run --host 0.0.0.0 --port $PORT"


def test_python_plain_script(tmp_path):
    tree(tmp_path, {"requirements.txt": "", "server.py": "print('hi')\n"})
    assert detect(tmp_path).command == "python3 server.py"


def test_procfile_web_is_the_command(tmp_path):
    tree(tmp_path, {"requirements.txt": "gunicorn\n", "app.py": FLASK_APP,
                    "Procfile": "# processes\nweb: gunicorn -w 2 app:app --bind :$PORT\nworker: python w.py\n"})
    plan = detect(tmp_path)
    assert plan.command == "gunicorn -w 2 app:app --bind :$PORT"
    assert cmd_line(plan.containerfile)[-1] == "exec gunicorn -w 2 app:app --bind :$PORT"


def test_python_without_a_way_to_start_says_what_to_add(tmp_path):
    tree(tmp_path, {"requirements.txt": "requests\n", "lib.py": ""})
    with pytest.raises(DetectError, match="Procfile with `web: "):
        detect(tmp_path)


def test_bad_procfile_line_is_named(tmp_path):
    tree(tmp_path, {"requirements.txt": "", "app.py": "", "Procfile": "web gunicorn app:app\n"})
    with pytest.raises(DetectError, match="Procfile line 1"):
        detect(tmp_path)


def test_procfile_parse():
    assert procfile.parse("web: a b\n\n# c\nworker:  d  \n") == {"web": "a b", "worker": "d"}


def test_node_start_script(tmp_path):
    tree(tmp_path, {"package.json": json.dumps({"scripts": {"start": "node server.js"}}),
                    "package-lock.json": "{}", "server.js": ""})
    plan = detect(tmp_path)
    assert plan.language == "node" and plan.command == "npm start"
    text = plan.containerfile
    assert text.index("COPY package*.json") < text.index("RUN npm ci --omit=dev") < text.index("COPY . .")
    assert text.startswith(f"FROM {STACKS['node'].image}\n")


def test_node_build_script_installs_dev_then_prunes(tmp_path):
    tree(tmp_path, {"package.json": json.dumps({"scripts": {"start": "node dist/s.js", "build": "tsc"}})})
    text = detect(tmp_path).containerfile
    assert "npm install --include=dev" in text and "npm run build && npm prune --omit=dev" in text


def test_node_without_start_script_or_entry(tmp_path):
    tree(tmp_path, {"package.json": json.dumps({"name": "x", "scripts": {"test": "jest"}})})
    with pytest.raises(DetectError, match="no way to start it.*scripts"):
        detect(tmp_path)


def test_node_main_file_is_a_fallback(tmp_path):
    tree(tmp_path, {"package.json": json.dumps({"main": "lib/run.js"}), "lib/run.js": ""})
    assert detect(tmp_path).command == "node lib/run.js"


def test_node_invalid_json(tmp_path):
    tree(tmp_path, {"package.json": "{ nope"})
    with pytest.raises(DetectError, match="package.json is not valid JSON"):
        detect(tmp_path)


def test_go_builds_in_go_stack_runs_on_static(tmp_path):
    # `go 1.19` is the oldest Go the module works with: the newest Go (trixie's) builds it.
    tree(tmp_path, {"go.mod": "module example.com/hello\n\ngo 1.19\n", "main.go": "package main\n"})
    plan = detect(tmp_path)
    assert plan.language == "go" and plan.stacks == ("go-trixie", "static")
    text = plan.containerfile
    assert f"FROM {STACKS['go-trixie'].image} AS build" in text
    assert f"FROM {STACKS['static'].image}\n" in text
    assert cmd_line(text)[-1] == "exec /app/server"


def test_static_site(tmp_path):
    tree(tmp_path, {"index.html": "<h1>hi</h1>"})
    plan = detect(tmp_path)
    assert plan.language == "static"
    assert "httpd -f" in plan.command and "${PORT:-8080}" in plan.command


def test_python_beats_node_and_static(tmp_path):
    tree(tmp_path, {"requirements.txt": "", "app.py": "", "package.json": "{}", "index.html": ""})
    assert detect(tmp_path).language == "python"


def test_looked_for_lists_every_marker_once():
    names = looked_for()
    assert names[:2] == ("Dockerfile", "Containerfile") and len(names) == len(set(names))


def test_stack_tags_change_with_the_recipe():
    python = STACKS["python"]
    assert python.image.startswith("localhost/vcapp/stack-python:bookworm-")
    assert python.alias == "localhost/vcapp/stack-python:bookworm"
    other = type(python)("python", python.packages + ("python3-dev",), env=python.env)
    assert other.image != python.image
    assert len({s.image for s in STACKS.values()}) == len(STACKS)


def test_python_requirements_with_vendored_wheels_copies_them_before_the_install(tmp_path):
    """`--find-links wheels` in requirements.txt: the wheels go in before `pip install`, so an
    app that brings its dependencies builds with no package index reachable."""
    tree(tmp_path, {"requirements.txt": "--no-index\n--find-links wheels\n-f=./more/\n-f https://x.test/w\n"
                                        "--find-links ../outside\nflask\ngunicorn\n",
                    "wheels/flask-3.1.0-py3-none-any.whl": "", "more/a.whl": "", "app.py": FLASK_APP})
    (tmp_path.parent / "outside").mkdir(exist_ok=True)
    text = detect(tmp_path).containerfile
    copies = [l for l in text.splitlines() if l.startswith("COPY ")]
    assert copies == ["COPY requirements.txt ./", "COPY wheels ./wheels", "COPY more ./more", "COPY . ."]
    assert text.index("COPY more ./more") < text.index("pip install") < text.index("COPY . .")
    assert cmd_line(text) == ["/bin/sh", "-c", "exec gunicorn --bind 0.0.0.0:$PORT --access-logfile - app:app"]


def test_python_requirements_without_local_find_links_copies_nothing_extra(tmp_path):
    tree(tmp_path, {"requirements.txt": "flask\n--find-links missing\n", "app.py": FLASK_APP})
    copies = [l for l in detect(tmp_path).containerfile.splitlines() if l.startswith("COPY ")]
    assert copies == ["COPY requirements.txt ./", "COPY . ."]
