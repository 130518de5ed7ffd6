"""`vcapp git-credential get|store|erase`: the credential helper git runs (vcapp/cli/credential_helper.py)."""

from __future__ import annotations

import sys

import click

from vcapp.cli import credential_helper
from vcapp.cli.client import ClientError, load_login


@click.command("git-credential")
@click.argument("operation")
def git_credential(operation: str) -> None:
    """git's credential helper for the cluster you logged in to (`vcapp login` registers it).

    `get` answers the saved admin token for that cluster's URLs and nothing for other hosts;
    `store` and `erase` change nothing. git runs it; people do not need to.
    """
    request = sys.stdin.read()
    if operation != "get":
        return  # store, erase, and operations added to git later: nothing to do
    try:
        login = load_login()
    except ClientError as e:
        click.echo(f"vcapp git-credential: {e.message}", err=True)
        return  # git then asks its next helper or the user
    sys.stdout.write(credential_helper.answer(credential_helper.parse_request(request), login))
