"""`vcapp run APP -- CMD`: a one-off command in the app's current release, with its env,
secrets and volumes (vcapp/release_phase.py), like `heroku run` or `dokku run`. Its output
streams here as it comes; `vcapp run` exits with the command's exit status."""

from __future__ import annotations

import json
import shlex
import sys

import click
import requests

from vcapp import buildremote
from vcapp.client import Client, ClientError
from vcapp.commands.output import api_errors

CONNECT_TIMEOUT_S = 10.0
STOPPED_STATUS = 124  # what timeout(1) exits with; the API says -1 for a command stopped at its limit


@click.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("app")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@api_errors
def run(app: str, command: tuple[str, ...]) -> None:
    """Run COMMAND once in APP's current release (its env, secrets and volumes), e.g.

    \b
    vcapp run blog -- python manage.py migrate
    vcapp run blog -- sh -c 'ls /data | wc -l'
    """
    client = Client.from_config()
    line = command[0] if len(command) == 1 else shlex.join(command)
    resp = client.stream("POST", f"/v1/apps/{app}/run", {"command": line}, connect_timeout=CONNECT_TIMEOUT_S,
                         read_timeout=buildremote.IDLE_TIMEOUT)
    with resp:
        try:
            for text in resp.iter_lines(decode_unicode=True):
                if text.startswith(buildremote.RESULT):
                    code = int(json.loads(text[len(buildremote.RESULT):])["code"])
                    sys.exit(STOPPED_STATUS if code < 0 else code)
                if text.startswith(buildremote.FAILURE):
                    raise ClientError(text[len(buildremote.FAILURE):])
                if text:
                    click.echo(buildremote.unescape(text))
        except requests.RequestException as e:
            raise ClientError(f"the connection to {client.login.url} broke ({type(e).__name__}); "
                              "the command may still be running") from None
    raise ClientError("the cluster ended the stream without the command's exit status")
