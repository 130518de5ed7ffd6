"""`vcapp run APP -- CMD`: a one-off command in the app's current release, with its env,
secrets and volumes (vcapp/deploy/release_phase.py), like `heroku run` or `dokku run`; on a
terminal (and `vcapp run APP`, a shell) it runs on one (vcapp/cli/console.py); `vcapp exec
APP -- CMD`: a command inside a running instance (vcapp/deploy/instance_exec.py), like `kubectl
exec`. The output streams here as it comes; both exit with the command's exit status."""

from __future__ import annotations

import json
import shlex
import sys

import click
import requests

from vcapp.cli import console
from vcapp.cli.client import Client, ClientError
from vcapp.cli.output import api_errors
from vcapp.deploy import remote_build

CONNECT_TIMEOUT_S = 10.0
STOPPED_STATUS = 124  # what timeout(1) exits with; the API says -1 for a command stopped at its limit


@click.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("app")
@click.option("-t/-T", "--tty/--no-tty", default=None,
              help="Run on a terminal (keys go in, the screen comes back); default: when this is one.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@api_errors
def run(app: str, tty: bool | None, command: tuple[str, ...]) -> None:
    """Run COMMAND once in APP's current release (its env, secrets and volumes); with no
    COMMAND, a shell on this terminal. E.g.

    \b
    vcapp run blog                      (a shell: bash if the image has it)
    vcapp run blog -- python manage.py migrate
    vcapp run blog -- sh -c 'ls /data | wc -l'
    """
    interactive = tty if tty is not None else sys.stdin.isatty() and sys.stdout.isatty()
    if interactive:
        sys.exit(console.session(Client.from_config(), app, command_line(command) if command else ""))
    if not command:
        raise ClientError(f"give the command to run: vcapp run {app} -- CMD (a shell needs a terminal: run "
                          "`vcapp run APP` from one, or add -t)")
    stream_command(f"/v1/apps/{app}/run", {"command": command_line(command)})


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("app")
@click.option("-i", "--instance", help="The instance to run in (`vcapp ps APP` lists them); default: the first web one.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@api_errors
def exec_(app: str, instance: str | None, command: tuple[str, ...]) -> None:
    """Run COMMAND inside a running instance of APP (its processes, files and memory), e.g.

    \b
    vcapp exec blog -- ps aux
    vcapp exec blog -i worker-0 -- cat /tmp/queue.log
    """
    body = {"command": command_line(command)}
    if instance is not None:
        body["instance"] = instance
    stream_command(f"/v1/apps/{app}/exec", body)


def command_line(command: tuple[str, ...]) -> str:
    """One argument is a shell line as typed; several are quoted into one."""
    return command[0] if len(command) == 1 else shlex.join(command)


def stream_command(path: str, body: dict) -> None:
    """POST a command to a streaming endpoint (api/streamed.py), print its output as it comes,
    and exit with its exit status."""
    client = Client.from_config()
    resp = client.stream("POST", path, body, connect_timeout=CONNECT_TIMEOUT_S, read_timeout=remote_build.IDLE_TIMEOUT)
    with resp:
        try:
            for text in resp.iter_lines(decode_unicode=True):
                if text.startswith(remote_build.RESULT):
                    code = int(json.loads(text[len(remote_build.RESULT):])["code"])
                    sys.exit(STOPPED_STATUS if code < 0 else code)
                if text.startswith(remote_build.FAILURE):
                    raise ClientError(text[len(remote_build.FAILURE):])
                if text:
                    click.echo(remote_build.unescape(text))
        except requests.RequestException as e:
            raise ClientError(f"the connection to {client.login.url} broke ({type(e).__name__}); "
                              "the command may still be running") from None
    raise ClientError("the cluster ended the stream without the command's exit status")
