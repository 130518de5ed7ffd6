"""Users' unchanged apps on the cluster `vcapp dev up` installs (platform.install): each is
pushed with git as its author wrote it, built, and asked through the edge. Dependencies
come from PyPI and npm at build through the cluster setting build.proxy, which points at
the simulated internet's one way out (vcapp/dev/egress.py); nothing is vendored.

    Flask      requirements.txt from PyPI; .python-version 3.13 gets the trixie stack,
               3.14 is refused at push
    Django     gunicorn, a project layout, static files collected at build (WhiteNoise)
    Express    express from npm
    Go         a module of the standard library only (the Go module proxy is not reachable
               from these machines); a module dependency goes to GOPROXY through the proxy
    static     index.html and a stylesheet

Each push -> live time (push started -> first 200 through the edge) is recorded as the
test's property `push_to_live_s` and printed. A Dockerfile FROM an image of the simulated
internet's registry is tests/deploy/test_public_images.py's; a web and a worker sharing a job
queue in their bucket, tests/apps/test_job_queue_cluster.py's."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.helpers import gitpush
from tests.helpers.gitpush import through_the_edge
from vcapp.dev import platform

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ROUTE_WAIT = 60.0  # s: the edge polls its routes every second; a promoted release answers in seconds
APP_CPUS = 0.25  # six apps on one 2-core machine; at the default half a core, four fit
TEST_TIMEOUT = gitpush.PUSH_TIMEOUT + ROUTE_WAIT + 60

FLASK_APP = """\
import sys
from importlib.metadata import version

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return f"flask {version('flask')} from PyPI on python {sys.version.split()[0]}\\n"
"""

DJANGO_PROJECT = {
    "requirements.txt": "Django>=4.2\ngunicorn\nwhitenoise\n",
    "Procfile": "web: gunicorn mysite.wsgi\n",
    "manage.py": """\
#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
""",
    "mysite/__init__.py": "",
    "mysite/settings.py": """\
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-dev-key")
DEBUG = False
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "*").split(",")
INSTALLED_APPS = ["django.contrib.staticfiles"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
DATABASES = {}
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
""",
    "mysite/urls.py": """\
import django
from django.http import HttpResponse
from django.urls import path


def home(request):
    return HttpResponse(f"django {django.get_version()}\\n", content_type="text/plain")


urlpatterns = [path("", home)]
""",
    "mysite/wsgi.py": """\
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
application = get_wsgi_application()
""",
    "static/site.css": "body { font-family: sans-serif; }\n",
}

EXPRESS_APP = {
    "package.json": json.dumps({
        "name": "expressapp", "version": "1.0.0", "private": True,
        "scripts": {"start": "node server.js"}, "dependencies": {"express": "^4.21.2"},
    }, indent=2) + "\n",
    "server.js": """\
const express = require("express");
const app = express();
const port = parseInt(process.env.PORT || "3000", 10);
app.get("/", (req, res) => res.type("text").send(`express ${require("express/package.json").version}\\n`));
app.listen(port, () => console.log(`listening on ${port}`));
""",
}

GO_MAIN = """\
package main

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "go %s\\n", runtime.Version())
	})
	if err := http.ListenAndServe(":"+port, nil); err != nil {
		panic(err)
	}
}
"""

GO_WITH_DEPENDENCY = """\
package main

import (
	"fmt"

	"rsc.io/quote"
)

func main() { fmt.Println(quote.Go()) }
"""

STATIC_SITE = {
    "index.html": '<!doctype html>\n<html><head><link rel="stylesheet" href="style.css"></head>'
                  "<body><h1>A static site</h1></body></html>\n",
    "style.css": "h1 { color: teal; }\n",
}


@pytest.fixture(scope="module")
def cl(make_sim):
    sim = make_sim(home=1, office=0)  # one machine: the build, the registry and the app on it
    return sim, platform.install(sim.dc, say=lambda line: None)


def push(cl, app: str, files: dict[str, str]) -> subprocess.CompletedProcess:
    sim, found = cl
    return gitpush.push(sim, found, app, files, "--cpus", str(APP_CPUS))


def deployed(cl, app: str, files: dict[str, str], record_property) -> tuple[subprocess.CompletedProcess, str]:
    """Push `files` as `app`, wait for its first 200 through the edge; (the push, the body).
    The push -> live time is recorded and printed."""
    sim, _ = cl
    started = time.monotonic()
    pushed = push(cl, app, files)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    deadline = time.monotonic() + ROUTE_WAIT
    while (answer := through_the_edge(sim, app))[0] != "200" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert answer[0] == "200", answer
    seconds = round(time.monotonic() - started, 1)
    record_property("push_to_live_s", seconds)
    print(f"\n{app}: push -> live through the edge in {seconds} s ({gitpush.built_line(pushed)})")
    return pushed, answer[1]


def proxy_log(sim) -> str:
    return (sim.dc.egress_dir / "tinyproxy.log").read_text(errors="replace")


def test_the_installed_cluster_builds_through_its_way_out(cl):
    sim, found = cl
    shown = json.loads(sim.run(found.first, "vcapp", "settings", "show", "--json").stdout)
    assert shown["build.proxy"] == sim.dc.proxy_url


@pytest.mark.timeout(TEST_TIMEOUT)
def test_flask_from_pypi_is_pushed_built_and_answers_through_the_edge(cl, record_property):
    sim, _ = cl
    pushed, body = deployed(cl, "flaskpypi", {"requirements.txt": "flask\n", "app.py": FLASK_APP}, record_property)
    assert "Downloading flask-" in pushed.stderr  # from PyPI, nothing vendored
    assert "CONNECT files.pythonhosted.org:443" in proxy_log(sim)  # the wheels came through the proxy
    assert body.startswith("flask ") and body.endswith(" from PyPI on python 3.11.2\n"), body


@pytest.mark.timeout(TEST_TIMEOUT)
def test_python_313_gets_the_trixie_stack(cl, record_property):
    pushed, body = deployed(cl, "py313", {"requirements.txt": "flask\n", "app.py": FLASK_APP,
                                          ".python-version": "3.13\n"}, record_property)
    assert "-----> Python 3.13.5 (trixie) for '3.13' in .python-version" in pushed.stderr
    assert body.endswith(" from PyPI on python 3.13.5\n"), body


def test_a_python_version_that_does_not_exist_is_refused_at_push(cl):
    pushed = push(cl, "py314", {"requirements.txt": "flask\n", "app.py": FLASK_APP, ".python-version": "3.14\n"})
    assert pushed.returncode != 0
    assert "Python 3.14 (.python-version) is not available: 3.11 (bookworm) and 3.13 (trixie) are" in pushed.stderr
    assert "STEP " not in pushed.stderr and "Downloading" not in pushed.stderr  # refused before building


@pytest.mark.timeout(TEST_TIMEOUT)
def test_django_with_gunicorn_serves_its_collected_static_files(cl, record_property):
    sim, _ = cl
    pushed, body = deployed(cl, "djangosite", DJANGO_PROJECT, record_property)
    assert "downloading django-" in pushed.stderr.lower(), pushed.stderr[-3000:]
    assert "static file copied to '/app/staticfiles'" in pushed.stderr, pushed.stderr[-3000:]  # collected at build
    assert body.startswith("django "), body
    assert through_the_edge(sim, "djangosite", "/static/site.css") == ("200", DJANGO_PROJECT["static/site.css"])


@pytest.mark.timeout(TEST_TIMEOUT)
def test_express_from_npm(cl, record_property):
    sim, _ = cl
    pushed, body = deployed(cl, "expressapp", EXPRESS_APP, record_property)
    assert "CONNECT registry.npmjs.org:443" in proxy_log(sim)  # express came from npm through the proxy
    assert body.startswith("express 4."), body


@pytest.mark.timeout(TEST_TIMEOUT)
def test_go_module_of_the_standard_library(cl, record_property):
    pushed, body = deployed(cl, "goapp", {"go.mod": "module example.com/goapp\n\ngo 1.19\n", "main.go": GO_MAIN},
                            record_property)
    assert "-----> Go 1.24.4 (trixie) for '1.19' in the go line of go.mod" in pushed.stderr  # the newest Go the module works with
    assert body == "go go1.24.4\n", body


def test_a_go_module_dependency_is_asked_of_goproxy_through_the_build_proxy(cl):
    """What a real machine behind a proxy does: `go mod download` asks GOPROXY (the default,
    proxy.golang.org) through HTTPS_PROXY. Here the proxy refuses it (not reachable from these
    machines), so the push fails, naming the module URL; the proxy's log shows the request."""
    sim, _ = cl
    pushed = push(cl, "godeps", {"go.mod": "module example.com/godeps\n\ngo 1.19\n\nrequire rsc.io/quote v1.5.2\n",
                                 "main.go": GO_WITH_DEPENDENCY})
    assert pushed.returncode != 0
    assert "https://proxy.golang.org/rsc.io/quote/@v/" in pushed.stderr, pushed.stderr[-3000:]
    assert "CONNECT proxy.golang.org:443" in proxy_log(sim)


@pytest.mark.timeout(TEST_TIMEOUT)
def test_static_site(cl, record_property):
    sim, _ = cl
    _, body = deployed(cl, "staticsite", STATIC_SITE, record_property)
    assert body == STATIC_SITE["index.html"]
    assert through_the_edge(sim, "staticsite", "/style.css") == ("200", STATIC_SITE["style.css"])
