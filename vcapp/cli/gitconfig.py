"""What the CLI changes in the user's git so `git push cluster main` needs no token anywhere:
the credential helper in the global git config (`vcapp login`) and the app's remote in the
current work tree (`vcapp apps create`).

Per cluster URL, `vcapp login` writes to the global git config (~/.gitconfig):

    [credential "http://10.0.0.1:7180"]
        helper =                                  # reset: no other helper is asked for this
        helper = !/usr/local/bin/vcapp git-credential    # URL, nor told the token to store

The empty helper first empties the helper list for this URL (gitcredentials(7)), so a general
`credential.helper store` or a keychain never gets the token to save; other credential
settings are left alone. git applies helpers in config-file order, so a general helper added
to ~/.gitconfig later would come after the reset: a later `vcapp login` sees that and moves
this section to the end again (one in another file, e.g. /etc/gitconfig, comes first and is
reset). git matches the section by scheme, host and port, so every repository path on that
host is covered and `useHttpPath` is not needed.

For an https URL (the edge's api.DOMAIN) it also sets `http.<url>.version = HTTP/1.1`: the
edge reloads its Caddy when an app, domain or machine comes or goes, and libcurl (git's HTTP
client) fails a request that races Go's graceful HTTP/2 shutdown with "Error in the HTTP2
framing layer", where over HTTP/1.1 it retries on a fresh connection. Everything here is idempotent: a second run
finds the same values in place and changes nothing. Each function returns
the sentence to show the user; none raises for a git that is missing or refuses.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

HELPER_SUBCOMMAND = "git-credential"
DEFAULT_REMOTE = "cluster"
GIT_TIMEOUT_S = 10.0  # a local `git config`/`git remote`: milliseconds unless the disk is stuck


class GitUnavailable(Exception):
    """git is not installed or refused; the message says what to do instead."""


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
    except FileNotFoundError:
        raise GitUnavailable("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise GitUnavailable(f"`git {' '.join(args[:2])}` did not finish within {GIT_TIMEOUT_S:.0f}s") from None


def _check(result: subprocess.CompletedProcess) -> None:
    if result.returncode != 0:
        raise GitUnavailable(result.stderr.strip() or f"git exited {result.returncode}")


def helper_command() -> str:
    """How git should run this vcapp: its absolute path when started as `vcapp`, else this
    Python with `-m vcapp` (a checkout, tests)."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "vcapp" and argv0.is_file():
        base = [os.path.abspath(argv0)]
    else:
        base = [sys.executable, "-m", "vcapp"]
    return "!" + shlex.join([*base, HELPER_SUBCOMMAND])


def register_helper(url: str, command: str | None = None) -> str:
    """Make git ask `vcapp git-credential` (and only it) for the credentials of `url`; an
    https `url` also gets HTTP/1.1 (see the module's docstring)."""
    command = command or helper_command()
    section = f"credential.{url}"
    key = f"{section}.helper"
    try:
        if url.startswith("https://"):
            _check(_git("config", "--global", f"http.{url}.version", "HTTP/1.1"))
        entries = _credential_entries()
        if _in_place(entries, key, ["", command]):
            return f"git: {url} already gets the token from `vcapp {HELPER_SUBCOMMAND}`"
        if any(k == key for k, _ in entries):
            _check(_git("config", "--global", "--unset-all", key))
        if not any(k.startswith(section + ".") and k != key for k, _ in entries):
            _git("config", "--global", "--remove-section", section)  # its header, so the new one goes last
        for value in ("", command):
            _check(_git("config", "--global", "--add", key, value))
    except GitUnavailable as e:
        return (f"git: not set up for {url} ({e}); to push without a token in the URL, run: "
                f"git config --global --add {shlex.quote(key)} '' && "
                f"git config --global --add {shlex.quote(key)} {shlex.quote(command)}")
    return f"git: pushes to {url} get the token from `vcapp {HELPER_SUBCOMMAND}` ({key} in your global git config)"


def _credential_entries() -> list[tuple[str, str]]:
    """(key, value) of the global credential.* settings in file order (section and variable
    names lowercase, as git prints them)."""
    found = _git("config", "--global", "--null", "--get-regexp", r"^credential\.")
    if found.returncode not in (0, 1):  # 1: none
        _check(found)
    entries = []
    for item in found.stdout.split("\0"):
        if item:
            k, _, v = item.partition("\n")
            entries.append((k, v))
    return entries


def _in_place(entries: list[tuple[str, str]], key: str, want: list[str]) -> bool:
    """The helpers of `key` are exactly `want` and no general `credential.helper` comes after
    them (git would then hand it the token to store)."""
    ours = [i for i, (k, _) in enumerate(entries) if k == key]
    if [entries[i][1] for i in ours] != want:
        return False
    return not any(k == "credential.helper" for k, _ in entries[ours[-1] + 1:])


def in_work_tree(cwd: Path | None = None) -> bool:
    try:
        result = _git("rev-parse", "--is-inside-work-tree", cwd=cwd)
    except GitUnavailable:
        return False
    return result.returncode == 0 and result.stdout.strip() == "true"


def add_remote(name: str, url: str, cwd: Path | None = None) -> tuple[bool, str]:
    """Add the git remote `name` -> `url` in the work tree at cwd, leaving a different one
    alone: (whether `name` now points at url, what to tell the user)."""
    add = f"git remote add {shlex.quote(name)} {shlex.quote(url)}"
    if not in_work_tree(cwd):
        return False, f"not in a git work tree; in the app's repository run: {add}"
    try:
        existing = _git("config", "--get", f"remote.{name}.url", cwd=cwd)
        if existing.returncode == 0:
            have = existing.stdout.strip()
            if have == url:
                return True, f"git remote {name} already points at {url}"
            return False, (f"git remote {name} already points at {have}; left as it is. To push this app "
                           f"there instead: git remote set-url {shlex.quote(name)} {shlex.quote(url)}")
        _check(_git("remote", "add", name, url, cwd=cwd))
    except GitUnavailable as e:
        return False, f"git remote {name} not added ({e}); run: {add}"
    return True, f"added git remote {name} -> {url}"
