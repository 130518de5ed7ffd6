"""The buildpack table: language -> (detect, Containerfile template), and `detect(tree)`.

Like Piku's dispatch table, one row per language, tried in order; the first whose detector
answers wins. A detector reads only the top of the tree and returns the template's
variables, or None when the tree is not in its language; it raises DetectError when the
tree is in its language but cannot be started (no command), saying what to add.
A Dockerfile or Containerfile at the root beats every row: it is built as it is.
The stack a buildpack builds FROM follows the language version the tree asks for
(buildpacks/versions.py): an impossible one is refused here, before anything is built.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from buildpacks import procfile, templates, versions
from buildpacks.stacks import STACKS

DEFAULT_PORT = 8080
DOCKERFILES = ("Dockerfile", "Containerfile")
PYTHON_MODULES = ("app.py", "main.py", "wsgi.py", "asgi.py", "server.py")
NODE_ENTRIES = ("server.js", "index.js", "app.js")


class DetectError(ValueError):
    """The tree cannot be built; the message says what was looked for and what to add."""


@dataclass(frozen=True)
class Buildpack:
    name: str
    markers: tuple[str, ...]  # files at the top of the tree that mean "this language"
    detect: Callable[[Path], dict | None]
    template: str
    stack: str


@dataclass(frozen=True)
class Plan:
    """How to build a tree: a Dockerfile of the tree's own, or a generated Containerfile."""

    language: str  # "dockerfile" or a buildpack name
    containerfile: str | None  # generated text; None when the tree brings its own
    dockerfile: Path | None  # the tree's own Dockerfile/Containerfile
    command: str | None  # the web command a buildpack chose
    stacks: tuple[str, ...]  # stack images the build needs, by name
    runtime: str = ""  # the language version chosen and why, when the tree asked for one


# ---- helpers (pure, read-only on the tree) ----------------------------------------------

def _read(tree: Path, name: str) -> str:
    path = tree / name
    return path.read_text(errors="replace") if path.is_file() else ""


def _has_dep(text: str, name: str) -> bool:
    """Whether a requirements/pyproject/Pipfile text names a distribution (case-insensitive)."""
    pattern = rf"(^|[\s\"'\[,]){re.escape(name)}(\s*$|[\s=<>~!\[;\"',@])"
    return re.search(pattern, text.lower(), re.MULTILINE) is not None


def _app_object(tree: Path) -> str | None:
    """`module:name` of the first top-level module that assigns `app` or `application`."""
    for filename in PYTHON_MODULES:
        text = _read(tree, filename)
        match = re.search(r"^(app|application)\s*[:=]", text, re.MULTILINE)
        if match:
            return f"{filename[:-3]}:{match.group(1)}"
    return None


def _first_file(tree: Path, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if (tree / n).is_file()), None)


# ---- Python -------------------------------------------------------------------------------

# `--find-links DIR`, `--find-links=DIR` or `-f DIR` on a line of its own in requirements.txt.
FIND_LINKS = re.compile(r"^\s*(?:--find-links|-f)(?:\s*=\s*|\s+)(\S+)\s*$", re.MULTILINE)


def _vendored_dirs(tree: Path) -> list[str]:
    """Directories of the tree that requirements.txt points pip at (vendored wheels), relative
    to the tree; URLs and paths outside the tree are left to pip (nothing to copy in)."""
    root, found = tree.resolve(), []
    for value in FIND_LINKS.findall(_read(tree, "requirements.txt")):
        if "://" in value or value.startswith("/"):
            continue
        path = (tree / value).resolve()
        if path.is_dir() and path != root and path.is_relative_to(root):
            found.append(path.relative_to(root).as_posix())
    return list(dict.fromkeys(found))


def _python_install(tree: Path) -> str:
    if (tree / "requirements.txt").is_file():
        vendored = "".join(templates.PYTHON_VENDORED_DIR.format(path=d) for d in _vendored_dirs(tree))
        return templates.PYTHON_REQUIREMENTS.format(vendored=vendored)
    if (tree / "Pipfile").is_file():
        flags = "--deploy" if (tree / "Pipfile.lock").is_file() else "--skip-lock"
        return templates.PYTHON_PIPFILE.format(pipenv_flags=flags)
    if re.search(r"^\[(project|build-system)\]", _read(tree, "pyproject.toml"), re.MULTILINE):
        return templates.PYTHON_PYPROJECT
    return templates.PYTHON_PLAIN


def _python_command(tree: Path, deps: str) -> str | None:
    target = _app_object(tree)
    if target and _has_dep(deps, "gunicorn"):
        return f"gunicorn --bind 0.0.0.0:$PORT --access-logfile - {target}"
    if target and _has_dep(deps, "uvicorn"):
        return f"uvicorn --host 0.0.0.0 --port $PORT {target}"
    if target and _has_dep(deps, "flask"):
        return f"flask --app {target} run --host 0.0.0.0 --port $PORT"
    module = _first_file(tree, PYTHON_MODULES)
    return f"python3 {module}" if module else None


def detect_python(tree: Path) -> dict | None:
    markers = [m for m in ("requirements.txt", "pyproject.toml", "Pipfile") if (tree / m).is_file()]
    if not markers:
        return None
    deps = "\n".join(_read(tree, m) for m in markers)
    command = procfile.web_command(tree) or _python_command(tree, deps)
    if command is None:
        raise DetectError(
            f"found a Python app ({', '.join(markers)}) but no way to start it: add a Procfile with "
            f"`web: <command serving on $PORT>`, or one of {', '.join(PYTHON_MODULES)}"
        )
    django = (tree / "manage.py").is_file() and _has_dep(deps, "django")
    return {"install": _python_install(tree), "command": command,
            "collectstatic": templates.PYTHON_COLLECTSTATIC if django else ""}


# ---- Node.js ------------------------------------------------------------------------------

def _package_json(tree: Path) -> dict:
    try:
        data = json.loads(_read(tree, "package.json"))
    except json.JSONDecodeError as e:
        raise DetectError(f"package.json is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}): fix it") from None
    if not isinstance(data, dict):
        raise DetectError("package.json must hold a JSON object with a \"scripts\": {\"start\": ...} entry")
    return data


def detect_node(tree: Path) -> dict | None:
    if not (tree / "package.json").is_file():
        return None
    package = _package_json(tree)
    scripts = package.get("scripts") or {}
    main = package.get("main") if isinstance(package.get("main"), str) else None
    entry = main if main and (tree / main).is_file() else _first_file(tree, NODE_ENTRIES)
    command = procfile.web_command(tree) or ("npm start" if scripts.get("start") else None)
    command = command or (f"node {entry}" if entry else None)
    if command is None:
        raise DetectError(
            "found a Node.js app (package.json) but no way to start it: add \"scripts\": "
            "{\"start\": \"node server.js\"} to package.json, or a Procfile with `web: <command>`"
        )
    locked = (tree / "package-lock.json").is_file() or (tree / "npm-shrinkwrap.json").is_file()
    if scripts.get("build"):
        install, build = templates.NODE_INSTALL_ALL, templates.NODE_BUILD
    else:
        install, build = (templates.NODE_INSTALL_LOCKED if locked else templates.NODE_INSTALL), ""
    return {"install": install, "build": build, "command": command}


# ---- Go, static ---------------------------------------------------------------------------

def detect_go(tree: Path) -> dict | None:
    if not (tree / "go.mod").is_file():
        sources = sorted(p.name for p in tree.glob("*.go") if p.is_file())
        if sources:
            raise DetectError(
                f"found Go source ({', '.join(sources[:3])}) but no go.mod: builds use Go modules; run "
                "`go mod init <module path>` (e.g. go mod init example.com/myapp) and `go mod tidy` "
                "in the app's directory, then commit go.mod (and go.sum)")
        return None
    return {"command": procfile.web_command(tree) or "/app/server", "run_stack": STACKS["static"].image}


def detect_static(tree: Path) -> dict | None:
    if not (tree / "index.html").is_file():
        return None
    default = 'httpd -f -v -p "0.0.0.0:${PORT:-8080}" -h /srv/www'
    return {"command": procfile.web_command(tree) or default}


BUILDPACKS: tuple[Buildpack, ...] = (
    Buildpack("python", ("requirements.txt", "pyproject.toml", "Pipfile"), detect_python, templates.PYTHON, "python"),
    Buildpack("node", ("package.json",), detect_node, templates.NODE, "node"),
    Buildpack("go", ("go.mod",), detect_go, templates.GO, "go"),
    Buildpack("static", ("index.html",), detect_static, templates.STATIC, "static"),
)


def stacks_named(dockerfile: str) -> tuple[str, ...]:
    """Names (STACKS keys) of the stacks a Dockerfile builds FROM (by alias or exact image), in file order."""
    refs = re.findall(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)", dockerfile, re.MULTILINE | re.IGNORECASE)
    by_ref = {ref: key for key, s in STACKS.items() for ref in (s.image, s.alias)}
    return tuple(dict.fromkeys(by_ref[r] for r in refs if r in by_ref))


def exposed_port(dockerfile: str) -> int | None:
    """The port the image's last stage declares first with EXPOSE (`8080`, `8080/tcp`), or None
    (no EXPOSE, a `$VAR`, a range, or UDP only). Docker's rule for the final image, minus the
    ports a base image exposes (they are not known before the build)."""
    port: int | None = None
    lines = re.sub(r"\\\r?\n", " ", dockerfile).splitlines()  # continuation lines joined
    for line in lines:
        words = line.split()
        if not words:
            continue
        if words[0].upper() == "FROM":
            port = None
        elif words[0].upper() == "EXPOSE" and port is None:
            for word in words[1:]:
                match = re.fullmatch(r"(\d{1,5})(?:/tcp)?", word, re.IGNORECASE)
                if match and 1 <= int(match.group(1)) <= 65535:
                    port = int(match.group(1))
                    break
    return port


def looked_for() -> tuple[str, ...]:
    """Every file name detection looks for, in the order it tries them."""
    return DOCKERFILES + tuple(m for pack in BUILDPACKS for m in pack.markers)


def _nothing_to_build() -> DetectError:
    names = looked_for()
    return DetectError(
        f"nothing to build: no {', '.join(names[:-1])} or {names[-1]} at the top of the tree: "
        "add one (a Dockerfile, or the file your language's tools use)"
    )


def render(pack: Buildpack, variables: dict, stack: str | None = None) -> str:
    """The Containerfile text of a buildpack for the variables its detector returned, FROM
    `stack` (a STACKS key; the buildpack's default stack when None)."""
    values = dict(variables, stack=STACKS[stack or pack.stack].image,
                  command=json.dumps(f"exec {variables['command']}"))
    return pack.template.format(**values)


def detect(tree: Path) -> Plan:
    """Choose how to build `tree`; raises DetectError saying what is missing."""
    if not tree.is_dir():
        raise DetectError(f"{tree} is not a directory: pass the checked-out source tree")
    own = _first_file(tree, DOCKERFILES)
    if own:
        return Plan("dockerfile", None, tree / own, None, stacks_named(_read(tree, own)))
    for pack in BUILDPACKS:
        try:
            variables = pack.detect(tree)
        except procfile.ProcfileError as e:
            raise DetectError(str(e)) from None
        if variables is not None:
            try:
                choice = versions.choose(pack.name, tree, pack.stack)
            except versions.VersionError as e:
                raise DetectError(str(e)) from None
            stacks = (choice.stack, "static") if pack.name == "go" else (choice.stack,)
            return Plan(pack.name, render(pack, variables, choice.stack), None, variables["command"], stacks,
                        choice.describe())
    raise _nothing_to_build()
