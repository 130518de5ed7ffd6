"""`vcapp apps|scale|ps|restart|logs|secrets`: apps, their instances, output and secrets.

Input is checked with the same functions the API uses (vcapp.state.apps, vcapp.state.secrets) before a
request is sent. Secret values go to the API once and are never printed back.
"""

from __future__ import annotations

import click

from vcapp.cli import credential_helper, gitconfig
from vcapp.cli.client import Client
from vcapp.cli.output import ago, api_errors, print_json, size_mb, table
from vcapp.state import apps as app_model
from vcapp.state import secrets as app_secrets

APPS_HEADERS = ["NAME", "RELEASE", "IMAGE", "INSTANCES", "CPUS", "MEMORY", "CREATED"]
PS_HEADERS = ["INSTANCE", "TYPE", "NODE", "RELEASE", "STATE", "HEALTH", "RESTARTS", "PORT", "REASON"]
LOG_CONNECT_TIMEOUT_S = 15.0
# Destroying with data waits for the instances to stop (vcapp/deploy/destroy.py STOP_TIMEOUT, 60 s)
# and then deletes volumes, bucket and images: a few seconds each.
DESTROY_TIMEOUT_S = 180.0


@click.group("apps", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
@api_errors
def apps(ctx: click.Context, as_json: bool) -> None:
    """List apps (or create and destroy them)."""
    if ctx.invoked_subcommand:
        return
    found = Client.from_config().get("/v1/apps")["apps"]
    if as_json:
        print_json(found)
        return
    rows = [[a["name"], app_model.release_label(a.get("release")) if a.get("image") else "-", a.get("image") or "(no deploy)",
             f"{a.get('healthy', 0)}/{a.get('count', 0)}", f"{a.get('cpus', 0):g}", size_mb(a.get("memory_mb")),
             ago(a.get("created_at"))] for a in found]
    click.echo(table(APPS_HEADERS, rows) if rows else "no apps yet: `vcapp apps create NAME`")


@apps.command("create")
@click.argument("name")
@click.option("--image", help="Run this image (already on the machines) instead of waiting for git push.")
@click.option("--port", type=int, help="Port the app listens on inside its container.")
@click.option("--command", "command", help="Command line run in the container (through sh -c).")
@click.option("--health-path", help="HTTP path that answers 2xx/3xx when the app is healthy (default: TCP check).")
@click.option("--count", default=1, show_default=True, help="Number of instances.")
@click.option("--memory", default=f"{app_model.DEFAULT_MEMORY_MB}M", show_default=True, help="Memory per instance.")
@click.option("--cpus", default=app_model.DEFAULT_CPUS, show_default=True, help="CPUs per instance.")
@click.option("--priority", default=0, show_default=True, help="Placed first when room is short (higher wins).")
@click.option("--constraint", "constraints", multiple=True, help="KEY=VALUE a machine must have (site=home).")
@click.option("--env", "env", multiple=True, help="KEY=VALUE environment (not secret; use `vcapp secrets`).")
@click.option("--volume", "volumes", multiple=True,
              help="NAME:/PATH[:SIZE]: mount the app's replicated volume NAME at PATH; its first instance "
                   "creates it with SIZE (default 1G) unless `vcapp volumes create` did.")
@click.option("--process", "processes", multiple=True,
              help="TYPE=COMMAND: a process type besides web (worker=\"python worker.py\"), one instance, "
                   "no HTTP; `vcapp scale APP TYPE=N` scales it.")
@click.option("--remote", default=gitconfig.DEFAULT_REMOTE, show_default=True,
              help="Name of the git remote added for the app's repository (inside a git work tree).")
@click.option("--no-remote", is_flag=True, help="Do not add a git remote.")
@api_errors
def create(name: str, image: str | None, port: int | None, command: str | None, health_path: str | None,
           count: int, memory: str, cpus: float, priority: int, constraints: tuple[str, ...],
           env: tuple[str, ...], volumes: tuple[str, ...], processes: tuple[str, ...], remote: str,
           no_remote: bool) -> None:
    """Create an app; without --image it waits for its first `git push`.

    Run inside the app's git work tree, it also adds the git remote `cluster` (--remote NAME)
    for the app's repository on the cluster you logged in to: no token in its URL, `vcapp
    login` set git up to find it. A remote of that name with another URL is left alone.
    """
    body: dict = {"name": name, "count": count, "memory": memory, "cpus": cpus, "priority": priority,
                  "constraints": _pairs(constraints, "--constraint"), "env": _pairs(env, "--env")}
    if image:
        body["image"] = image
    if port is not None:
        body["port"] = port
    if command:
        body["command"] = ["sh", "-c", command]
    if health_path:
        body["health"] = {"type": "http", "path": health_path}
    if volumes:
        body["volumes"] = [_volume(v) for v in volumes]
    if processes:
        body["processes"] = {k: {"command": ["sh", "-c", v]} for k, v in _pairs(processes, "--process").items()}
    app_model.new_spec(name, body)  # the API's own checks, before anything is sent
    client = Client.from_config()
    spec = client.post("/v1/apps", body)["app"]
    url = credential_helper.repo_url(client.login.url, spec["name"])
    click.echo(f"app {spec['name']} created" + (f", running {spec['image']}" if spec.get("image") else ""))
    ready = False
    if not no_remote:
        ready, message = gitconfig.add_remote(remote, url)
        click.echo(message)
    if not spec.get("image"):
        click.echo(f"deploy it: git push {remote if ready else url} main")


def _volume(text: str) -> dict:
    """NAME:/PATH or NAME:/PATH:SIZE as an API volume entry."""
    parts = text.split(":")
    entry = dict(zip(("source", "destination"), parts[:2]))
    if len(parts) == 3:
        entry["size"] = parts[2]
    elif len(parts) > 3:
        raise click.BadParameter(f"{text!r}: give NAME:/PATH or NAME:/PATH:SIZE, like data:/data:1G",
                                 param_hint="--volume")
    return entry


def _pairs(items: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: give KEY=VALUE", param_hint=what)
        out[key] = value
    return out


@apps.command("destroy")
@click.argument("name")
@click.option("--confirm", metavar="NAME", help="The app's name again: destroy it with its volumes and bucket "
                                                "(their data is deleted for good); no question asked.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (an app with stored data still needs --confirm).")
@api_errors
def destroy(name: str, confirm: str | None, yes: bool) -> None:
    """Destroy an app: stop its instances everywhere and delete its secrets, access tokens,
    custom domains, releases, repository and images; with --confirm NAME also its volumes and
    bucket with all their data (without it, an app that has them is refused and nothing changes)."""
    app_model.app_name(name)
    if confirm is not None and confirm != name:
        raise click.UsageError(f"--confirm {confirm} does not match the app {name}; to destroy {name} with its data: "
                               f"vcapp apps destroy {name} --confirm {name}")
    if confirm is None and not yes and not click.confirm(
            f"destroy app {name}: stop all its instances and delete its secrets, access tokens, domains, "
            "releases, repository and images?"):
        raise click.Abort()
    answer = Client.from_config().request("DELETE", f"/v1/apps/{name}", params={"confirm": confirm} if confirm else None,
                                          timeout=DESTROY_TIMEOUT_S)
    data = [f"volume(s) {', '.join(answer['volumes'])}"] if answer.get("volumes") else []
    if answer.get("bucket"):
        data.append(f"bucket {answer['bucket']}")
    click.echo(f"app {name} destroyed ({answer.get('tokens', 0)} access token(s), {answer.get('releases', 0)} "
               f"release(s), {answer.get('images', 0)} image(s){''.join(', ' + d for d in data)} deleted); "
               "its instances are stopping")
    if answer.get("images_left_on"):
        click.echo(f"registries of machines that are down ({', '.join(answer['images_left_on'])}) may keep "
                   "copies of its images until they return; no app references them")


@click.command("scale")
@click.argument("app")
@click.argument("types", nargs=-1, metavar="[TYPE=N]...")
@click.option("--count", type=int, help="Number of web instances (same as web=N).")
@click.option("--memory", help="Memory per instance: 256M, 1G.")
@click.option("--cpus", help="CPUs per instance: 0.5, 2.")
@api_errors
def scale(app: str, types: tuple[str, ...], count: int | None, memory: str | None, cpus: str | None) -> None:
    """Change an app's instance counts (--count for web, or TYPE=N per process type:
    `vcapp scale shop web=2 worker=1`) and limits (new limits roll the instances)."""
    body: dict = {k: v for k, v in (("count", count), ("memory", memory), ("cpus", cpus)) if v is not None}
    if types:
        body["processes"] = app_model.parse_scale_counts(_pairs(types, "TYPE=N"))
    if not body:
        raise click.UsageError("give TYPE=N (web=2 worker=1), --count, --memory and/or --cpus")
    for key, check in (("count", app_model.parse_count), ("memory", app_model.parse_memory),
                       ("cpus", app_model.parse_cpus)):
        if key in body:
            check(body[key])
    spec = Client.from_config().post(f"/v1/apps/{app}/scale", body)["app"]
    extra = "".join(f", {k} x {p.get('count', 0)}" for k, p in sorted((spec.get("processes") or {}).items()))
    click.echo(f"app {app}: {spec['count']} x {spec['cpus']:g} CPU, {size_mb(spec['memory_mb'])}"
               f"{', web x ' + str(spec['count']) + extra if extra else ''}")


@click.command("ps")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@api_errors
def ps(app: str, as_json: bool) -> None:
    """An app's instances: where they run, their state and health, or why they are pending."""
    found = Client.from_config().get(f"/v1/apps/{app}/ps")["instances"]
    if as_json:
        print_json(found)
        return
    rows = [[i["instance"], i.get("process") or "web", i.get("node") or "-", app_model.release_label(i.get("release")), i.get("state"), i.get("health") or "-",
             i.get("restarts", 0), i.get("host_port") or "-", i.get("reason") or ""] for i in found]
    click.echo(table(PS_HEADERS, rows) if rows else f"app {app} has no instances (count 0)")


@click.command("restart")
@click.argument("app")
@api_errors
def restart(app: str) -> None:
    """Restart an app's instances one new container at a time (no downtime)."""
    spec = Client.from_config().post(f"/v1/apps/{app}/restart", {})["app"]
    click.echo(f"app {app}: restarting {app_model.release_label(spec.get('release'))} (restart "
               f"{spec.get('revision', 0)}): one new container at a time, each healthy before the old stops")


@click.command("logs")
@click.argument("app")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option("--instance", "-i", help="Only this instance's output (default: every instance and the routers).")
@click.option("--tail", "-n", type=int, help="Start with the last N lines of each source.")
@click.option("--since", help="Leave out lines older than this: 30s, 15m, 1h, 2d (or unix seconds).")
@click.option("--source", type=click.Choice(["all", "app", "router"]), default="all", show_default=True,
              help="app: the instances' output; router: the routers' access lines.")
@api_errors
def logs(app: str, follow: bool, instance: str | None, tail: int | None, since: str | None, source: str) -> None:
    """Print an app's output and its requests, wherever they ran: every instance's lines
    ("0| ...") and every router's access lines ("router@home-1| method=GET path=...")."""
    client = Client.from_config()
    params = {"follow": "1" if follow else None, "instance": instance, "tail": tail, "since": since,
              "source": source if source != "all" else None}
    resp = client.stream("GET", f"/v1/apps/{app}/logs", params={k: v for k, v in params.items() if v is not None},
                         connect_timeout=LOG_CONNECT_TIMEOUT_S)
    try:
        for line in resp.iter_lines(decode_unicode=True):
            click.echo(line)
    except KeyboardInterrupt:
        pass
    finally:
        resp.close()


@click.group("secrets")
def secrets() -> None:
    """An app's secrets: set, list (names only), unset. Values are encrypted in the cluster."""


@secrets.command("set")
@click.argument("app")
@click.argument("pairs", nargs=-1, required=True)
@api_errors
def secrets_set(app: str, pairs: tuple[str, ...]) -> None:
    """Set NAME=value secrets; the app's instances restart with them (no downtime)."""
    values = app_secrets.parse_pairs(list(pairs))
    answer = Client.from_config().request("PUT", f"/v1/apps/{app}/secrets", body={"secrets": values})
    click.echo(f"app {app}: set {', '.join(sorted(values))}; secrets now {', '.join(answer['secrets'])}")


@secrets.command("list")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@api_errors
def secrets_list(app: str, as_json: bool) -> None:
    """The names of an app's secrets (values are never shown)."""
    found = Client.from_config().get(f"/v1/apps/{app}/secrets")["secrets"]
    if as_json:
        print_json(found)
        return
    click.echo("\n".join(found) if found else f"app {app} has no secrets")


@secrets.command("unset")
@click.argument("app")
@click.argument("names", nargs=-1, required=True)
@api_errors
def secrets_unset(app: str, names: tuple[str, ...]) -> None:
    """Remove secrets by name."""
    for name in names:
        app_secrets.secret_name(name)
    answer = Client.from_config().request("DELETE", f"/v1/apps/{app}/secrets", body={"names": list(names)})
    click.echo(f"app {app}: removed {', '.join(names)}; left: {', '.join(answer['secrets']) or 'none'}")
