"""`vcapp login URL [TOKEN]`: check an admin token against a cluster's API, remember both, and
set git up so `git push` to the cluster finds the token by itself (vcapp/cli/gitconfig.py)."""

from __future__ import annotations

import click

from vcapp.cli import gitconfig
from vcapp.cli.client import Client, Login, normalize_url, save_login
from vcapp.cli.credential_helper import cluster_git_urls
from vcapp.cli.output import api_errors


@click.command("login")
@click.argument("url")
@click.argument("token", required=False)
@click.option("--token-stdin", is_flag=True, help="Read the token from standard input (scripts: "
              "`vcapp login URL --token-stdin < file`), as docker login --password-stdin.")
@click.option("--no-git", is_flag=True, help="Do not register the git credential helper.")
@api_errors
def login(url: str, token: str | None, token_stdin: bool, no_git: bool) -> None:
    """Log in to the admin API at URL with an admin TOKEN (asked for when not given: then it is
    in neither your shell history nor the process list).

    The token is checked against the cluster first, then saved in ~/.config/vcapp/config.json
    (readable only by you). git is told to ask `vcapp git-credential` for the credentials of
    URL, of the edge's https://api.DOMAIN when the cluster has a domain, and of each machine's
    API, so a remote without a token in it (`vcapp apps create` adds one) pushes with this
    token through the edge or to any machine. Log in again after machines join.
    """
    if token_stdin:
        if token:
            raise click.UsageError("give the token as an argument or with --token-stdin, not both")
        token = click.get_text_stream("stdin").readline().strip()
        if not token:
            raise click.UsageError("--token-stdin: standard input held no token")
    if not token:
        token = click.prompt("admin token", hide_input=True).strip()
    credentials = Login(normalize_url(url), token.strip())
    answer = Client(credentials).get("/v1/status")
    git_urls = cluster_git_urls(credentials.url, answer["cluster"].get("domain"), answer.get("nodes") or [])
    path = save_login(Login(credentials.url, credentials.token, git_urls))
    count = answer["summary"]
    click.echo(f"logged in to cluster {answer['cluster']['name']} at {credentials.url} "
               f"as {answer.get('admin')!r} ({count['nodes']} machine{'s' if count['nodes'] != 1 else ''}, "
               f"{count['up']} up)")
    click.echo(f"saved to {path}")
    if not no_git:
        for git_url in (credentials.url, *git_urls):
            click.echo(gitconfig.register_helper(git_url))

