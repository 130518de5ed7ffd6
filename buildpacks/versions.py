"""Language versions: what an app asks for, what Debian ships, and which stack serves it.

    OFFERS (one row per language and Debian release, versions as `apt-cache policy` shows)
    python  3.11.2  bookworm  stack "python"        3.13.5  trixie  stack "python-trixie"
    node   18.20.4  bookworm  stack "node"         20.19.2  trixie  stack "node-trixie"
    go      1.19.8  bookworm  stack "go"            1.24.4  trixie  stack "go-trixie"

Where a request is read, first found wins (REQUESTS):
    python  .python-version ("3.13"), runtime.txt ("python-3.13.1"), requires-python in
            pyproject.toml (PEP 440: ">=3.10,<3.14", "~=3.11", "==3.13.*")
    node    "engines": {"node": ...} in package.json (npm ranges: ">=18", "^20.1", "18.x",
            "16 || 18", "18 - 20")
    go      the `go` line of go.mod: the oldest Go the module works with

A pinned version is matched on major.minor: Debian ships one patch release of each. The
newest offer that satisfies the request wins; an app that states nothing gets the language's
default stack (bookworm: the one every machine already has). A request nothing satisfies is
refused before anything is built, naming what is available. Pure: reads files, no I/O else.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


class VersionError(ValueError):
    """The app asks for a language version no stack has; the message names those that exist."""


Version = tuple[int, ...]


@dataclass(frozen=True)
class Offer:
    language: str
    version: Version
    suite: str
    stack: str  # key of buildpacks.stacks.STACKS


OFFERS: tuple[Offer, ...] = (
    Offer("python", (3, 11, 2), "bookworm", "python"),
    Offer("python", (3, 13, 5), "trixie", "python-trixie"),
    Offer("node", (18, 20, 4), "bookworm", "node"),
    Offer("node", (20, 19, 2), "trixie", "node-trixie"),
    Offer("go", (1, 19, 8), "bookworm", "go"),
    Offer("go", (1, 24, 4), "trixie", "go-trixie"),
)
LABELS = {"python": "Python", "node": "Node.js", "go": "Go"}
# How many parts of a version each language names its releases by (Python 3.13, Node 20, Go 1.24).
RELEASE_PARTS = {"python": 2, "node": 1, "go": 2}


@dataclass(frozen=True)
class Request:
    """What an app asked for: the text as written, where, and a test of a version."""

    text: str
    source: str
    accepts: Callable[[Version], bool]


@dataclass(frozen=True)
class Choice:
    stack: str
    offer: Offer | None  # None: the app asked for nothing; the default stack
    request: Request | None

    def describe(self) -> str:
        if self.offer is None or self.request is None:
            return ""
        o = self.offer
        return (f"{LABELS[o.language]} {'.'.join(map(str, o.version))} ({o.suite}) "
                f"for {self.request.text!r} in {self.request.source}")


# ---- versions and comparators -----------------------------------------------------------

def parse_version(text: str) -> Version:
    """"3.13" -> (3, 13); "v20.1.0" -> (20, 1, 0); "" or not a version -> ValueError."""
    parts = text.strip().lstrip("vV").split(".")
    if not parts or not all(p.isdigit() for p in parts):
        raise ValueError(text)
    return tuple(int(p) for p in parts)


def _pad(v: Version, n: int = 3) -> Version:
    return (v + (0,) * n)[:max(n, len(v))]


def _bump(v: Version) -> Version:
    """The first version past every version that starts with `v`: (18,) -> (19,), (3, 11) -> (3, 12)."""
    return v[:-1] + (v[-1] + 1,)


def _starts(prefix: Version) -> Callable[[Version], bool]:
    return lambda v: v[:len(prefix)] == prefix


def _between(low: Version | None, high: Version | None, inclusive_high: bool = False) -> Callable[[Version], bool]:
    def test(v: Version) -> bool:
        if low is not None and _pad(v) < _pad(low):
            return False
        if high is not None:
            return _pad(v) <= _pad(high) if inclusive_high else _pad(v) < _pad(high)
        return True
    return test


def _all(tests: list[Callable[[Version], bool]]) -> Callable[[Version], bool]:
    return lambda v: all(t(v) for t in tests)


def pin(text: str, parts: int) -> Callable[[Version], bool]:
    """A pinned version ("3.13.1", "3.13"): the same release (first `parts` numbers)."""
    return _starts(parse_version(text)[:parts])


PEP440 = re.compile(r"^\s*(===|==|!=|~=|>=|<=|>|<)\s*([0-9][0-9.]*)(\.\*)?\s*$")


def pep440(spec: str) -> Callable[[Version], bool]:
    """A PEP 440 specifier set such as ">=3.10,<3.14" or "==3.13.*" (ValueError if not one)."""
    tests = []
    for clause in spec.split(","):
        m = PEP440.match(clause)
        if not m:
            raise ValueError(clause)
        op, v, star = m.group(1), parse_version(m.group(2)), bool(m.group(3))
        if op in ("==", "==="):  # a pin: the same release, as everywhere here
            tests.append(_starts(v if star else v[:RELEASE_PARTS["python"]]))
        elif op == "!=":
            tests.append((lambda x, v=v: not _starts(v)(x)) if star else (lambda x, v=v: _pad(x) != _pad(v)))
        elif op == "~=":
            tests.append(_all([_between(v, None), _starts(v[:-1])]))
        elif op == ">=":
            tests.append(_between(v, None))
        elif op == "<=":
            tests.append(_between(None, v, inclusive_high=True))
        elif op == ">":
            tests.append(lambda x, v=v: _pad(x) > _pad(v))
        else:
            tests.append(_between(None, v))
    return _all(tests)


NPM_COMPARATOR = re.compile(r"^(\^|~|>=|<=|>|<|=)?v?((?:\d+|[xX*])(?:\.(?:\d+|[xX*])){0,2})$")


def _npm_partial(text: str) -> Version:
    """The numbers before the first wildcard: "18.x" -> (18,), "*" -> ()."""
    out = []
    for part in text.split("."):
        if not part.isdigit():
            break
        out.append(int(part))
    return tuple(out)


def _npm_comparator(token: str) -> Callable[[Version], bool]:
    m = NPM_COMPARATOR.match(token)
    if not m:
        raise ValueError(token)
    op, v = m.group(1) or "", _npm_partial(m.group(2))
    if not v:
        return lambda x: op not in ("<", ">")
    if op == "^":
        first = next((i for i, n in enumerate(v) if n != 0), len(v) - 1)
        return _between(v, _bump(v[:first + 1]))
    if op == "~":
        return _between(v, _bump(v[:2] if len(v) >= 2 else v))
    if op == ">=":
        return _between(v, None)
    if op == ">":
        return _between(_bump(v), None) if len(v) < 3 else (lambda x: _pad(x) > _pad(v))
    if op == "<":
        return _between(None, v)
    if op == "<=":
        return _between(None, _bump(v)) if len(v) < 3 else _between(None, v, inclusive_high=True)
    return _starts(v)


def npm_range(spec: str) -> Callable[[Version], bool]:
    """An npm semver range ("16 || >=18 <21", "^20.1.0", "18 - 20", "18.x", "*")."""
    alternatives = []
    for alt in spec.split("||"):
        alt = alt.strip()
        hyphen = re.fullmatch(r"(\S+)\s+-\s+(\S+)", alt)
        if hyphen:
            low, high = _npm_partial(hyphen.group(1)), _npm_partial(hyphen.group(2))
            if not low or not high:
                raise ValueError(alt)
            alternatives.append(_between(low, _bump(high)) if len(high) < 3 else _between(low, high, True))
            continue
        tokens = re.sub(r"(\^|~|>=|<=|>|<|=)\s+", r"\1", alt).split()
        alternatives.append(_all([_npm_comparator(t) for t in tokens]))
    return lambda v: any(a(v) for a in alternatives)


# ---- reading requests -------------------------------------------------------------------

def _text(tree: Path, name: str) -> str | None:
    path = tree / name
    return path.read_text(errors="replace") if path.is_file() else None


def _python_version_file(tree: Path) -> Request | None:
    text = _text(tree, ".python-version")
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        return None
    return Request(lines[0], ".python-version", pin(lines[0], RELEASE_PARTS["python"]))


def _runtime_txt(tree: Path) -> Request | None:
    text = (_text(tree, "runtime.txt") or "").strip()
    if not text:
        return None
    m = re.fullmatch(r"python-(\S+)", text)
    if not m:
        raise VersionError(f"runtime.txt says {text!r}: write python-<version>, e.g. python-3.13")
    return Request(m.group(1), "runtime.txt", pin(m.group(1), RELEASE_PARTS["python"]))


def _requires_python(tree: Path) -> Request | None:
    text = _text(tree, "pyproject.toml")
    if text is None:
        return None
    try:
        spec = tomllib.loads(text).get("project", {}).get("requires-python")
    except tomllib.TOMLDecodeError:
        return None  # pip reports a broken pyproject.toml with its own words
    if not isinstance(spec, str) or not spec.strip():
        return None
    return Request(spec.strip(), "requires-python in pyproject.toml", pep440(spec))


def _engines_node(tree: Path) -> Request | None:
    try:
        data = json.loads(_text(tree, "package.json") or "{}")
    except json.JSONDecodeError:
        return None  # the Node buildpack says what is wrong with package.json
    engines = data.get("engines") if isinstance(data, dict) else None
    spec = engines.get("node") if isinstance(engines, dict) else None
    if not isinstance(spec, str) or not spec.strip():
        return None
    return Request(spec.strip(), "engines.node in package.json", npm_range(spec))


def _go_mod(tree: Path) -> Request | None:
    m = re.search(r"^go\s+(\S+)\s*$", _text(tree, "go.mod") or "", re.MULTILINE)
    if not m:
        return None
    return Request(m.group(1), "the go line of go.mod", _between(parse_version(m.group(1)), None))


# Where each language's request is read, in order of precedence.
REQUESTS: dict[str, tuple[Callable[[Path], Request | None], ...]] = {
    "python": (_python_version_file, _runtime_txt, _requires_python),
    "node": (_engines_node,),
    "go": (_go_mod,),
}


def request(language: str, tree: Path) -> Request | None:
    """The first version request the tree makes for `language`, None if it makes none."""
    for read in REQUESTS.get(language, ()):
        try:
            found = read(tree)
        except ValueError as e:
            if isinstance(e, VersionError):
                raise
            raise VersionError(f"{LABELS[language]} version {str(e)!r} is not a version "
                               f"{_example(language)}") from None
        if found:
            return found
    return None


def _example(language: str) -> str:
    return {"python": "(write e.g. 3.13 in .python-version)", "node": '(write e.g. "engines": {"node": ">=18"})',
            "go": "(write e.g. go 1.24 in go.mod)"}[language]


def available(language: str) -> str:
    """'3.11 (bookworm) and 3.13 (trixie)'."""
    names = [f"{'.'.join(map(str, o.version[:RELEASE_PARTS[language]]))} ({o.suite})"
             for o in OFFERS if o.language == language]
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]


def choose(language: str, tree: Path, default: str) -> Choice:
    """The stack for the tree's language version: the newest offer that satisfies its request,
    `default` when it makes none; VersionError when no offer does."""
    asked = request(language, tree)
    if asked is None:
        return Choice(default, None, None)
    fits = [o for o in OFFERS if o.language == language and asked.accepts(o.version)]
    if not fits:
        raise VersionError(
            f"{LABELS[language]} {asked.text} ({asked.source}) is not available: {available(language)} are; "
            f"ask for one of them")
    best = max(fits, key=lambda o: o.version)
    return Choice(best.stack, best, asked)
