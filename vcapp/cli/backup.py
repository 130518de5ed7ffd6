"""`vcapp backup create`: the whole cluster in one file encrypted to your age key;
`vcapp backup restore FILE`: found a new cluster from it, on a blank machine."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import click

from vcapp.cli import cluster as cluster_cli
from vcapp.cli.client import Client, ClientError
from vcapp.cli.output import api_errors, print_json, table
from vcapp.deploy import backup_target, remote_build
from vcapp.errors import VcError

READ_TIMEOUT = remote_build.IDLE_TIMEOUT  # the machine sends a line at least every KEEPALIVE_S


@click.group()
def backup() -> None:
    """Back the cluster up, and found a new one from a backup."""


def _recipient(value: str) -> str:
    path = Path(value)
    if not value.startswith("age1") and path.is_file():  # a file age-keygen wrote, or one with the public key
        for line in path.read_text().splitlines():
            word = line.split(":", 1)[1].strip() if line.startswith("# public key:") else line.strip()
            if word.startswith("age1"):
                return word
        raise click.BadParameter(f"{value}: no age public key (age1...) in it", param_hint="--recipient")
    return value


@backup.command("create")
@click.option("--recipient", "-r", envvar="VCAPP_BACKUP_RECIPIENT", required=True,
              help="The age public key (age1...) the backup is encrypted to, or a file holding it "
                   "(`age-keygen -o backup-key.txt` makes the pair; keep that file off the cluster).")
@click.option("--output", "-o", "out_dir", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Directory the backup file is written to.")
@api_errors
def create(recipient: str, out_dir: str) -> None:
    """Back up the cluster: its state (apps, releases, secrets, tokens, settings, history),
    each app's image and each volume's files, in one file only your age key opens."""
    dest = Path(out_dir)
    dest.mkdir(parents=True, exist_ok=True)
    resp = Client.from_config().stream("POST", "/v1/backups", {"recipient": _recipient(recipient)},
                                       read_timeout=READ_TIMEOUT)
    with resp:
        raw = resp.raw
        lines = (line.decode(errors="replace") for line in iter(raw.readline, b""))
        result = remote_build.read_result(lines, lambda line: click.echo(line, err=True), ClientError)
        if result is None:
            raise ClientError("the machine writing the backup went away before it ended; try again")
        name = Path(result["name"]).name
        part = dest / f".{name}.part"
        left = int(result["bytes"])
        with open(part, "wb") as out:
            while left:
                chunk = raw.read(min(left, 1 << 20))
                if not chunk:
                    part.unlink(missing_ok=True)
                    raise ClientError("the backup's transfer was cut; try again")
                out.write(chunk)
                left -= len(chunk)
        os.replace(part, dest / name)
    made = result["manifest"]
    click.echo(f"{dest / name}  ({result['bytes'] / 1e6:.1f} MB: {len(made['apps'])} apps, "
               f"{len(made['images'])} images, {len(made['volumes'])} volumes, {len(made.get('buckets') or [])} buckets)")
    for why in made.get("skipped") or []:
        click.echo(f"not in the backup: {why}", err=True)


@backup.command("restore")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--identity", "-i", required=True, type=click.Path(dir_okay=False),
              help="The age key file the backup was made for (from `age-keygen -o`).")
@click.option("--edge", default=None, help="The edge's public host:port [default: the backed-up cluster's].")
@cluster_cli.machine_options("--node-name")
def restore(file: str, identity: str, edge: str | None, node_name, site, addr, labels) -> None:
    """Found a new cluster on this blank machine from a backup: its apps, releases, secrets,
    tokens (old admin tokens work again), settings, images and volume data. Then join the
    other machines with the join token it prints; the apps start as machines come."""
    from vcapp.deploy import restore as restoring
    from vcapp.machine import NodeConfig
    from vcapp.node import bootstrap
    from vcapp.state.store import Store

    work = Path(tempfile.mkdtemp(prefix="vcapp-restore-"))
    try:
        try:
            found = restoring.open_backup(Path(file), Path(identity), work)
            cluster = found.cluster
            node_name = node_name or bootstrap.default_name()
            addr = addr or bootstrap.default_addr()
            click.echo(f"backup of cluster {cluster.get('name')} ({cluster.get('domain')}) made "
                       f"{restoring.when_text(found.manifest.get('created_at'))}: {len(found.manifest['apps'])} apps, "
                       f"{len(found.manifest['volumes'])} volumes", err=True)
            record, admin, join = bootstrap.init_cluster(
                name=cluster["name"], domain=cluster["domain"], edge=cluster.get("edge", "") if edge is None else edge,
                node_name=node_name, site=site, addr=addr, labels=cluster_cli.parse_labels(labels),
                max_nodes=int(cluster.get("max_nodes") or 10))
        except VcError as e:
            raise click.ClickException(e.message)
        try:
            cfg = NodeConfig.load()
            done = restoring.put_back(Store(cfg.store_endpoints()), cfg, found, lambda line: click.echo(line, err=True))
        except VcError as e:
            raise click.ClickException(f"{e.message}\nthis machine founded cluster {record['name']} but the restore did "
                                       "not end: `vcapp node leave` here, then run `vcapp backup restore` again") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    click.echo(f"restored: {', '.join(done['apps']) or 'no apps'}"
               + (f"; volumes {', '.join(done['volumes'])}" if done["volumes"] else "")
               + (f"; buckets {', '.join(done['buckets'])}" if done["buckets"] else "") + "\n")
    cluster_cli.announce(record, admin, join, node_name)


@backup.command("schedule")
@click.option("--every", default="12h", show_default=True, help="How often: 90m, 12h, 1d (1 hour at least).")
@click.option("--keep", default=5, show_default=True, type=int, help="How many backups are kept.")
@click.option("--recipient", "-r", envvar="VCAPP_BACKUP_RECIPIENT", help="The age public key, or a file holding it.")
@click.option("--dir", "where", help="An absolute directory on the machines (best a mount they share): the "
                                      "controller writes the backups there.")
@click.option("--s3", "s3_url", metavar="s3://BUCKET/PREFIX", help="A bucket on an S3 service outside the "
                                                                    "cluster: the place that outlives the machines.")
@click.option("--s3-endpoint", help="The S3 service, e.g. https://s3.eu-west-1.amazonaws.com.")
@click.option("--s3-region", default="", help="The bucket's region, when the service wants one.")
@click.option("--s3-access-key", help="A key that may list, write and delete in the bucket.")
@click.option("--s3-secret-key-stdin", is_flag=True, help="Read its secret key from standard input.")
@click.option("--off", is_flag=True, help="Stop the scheduled backups (the backups made stay).")
@api_errors
def schedule(every: str, keep: int, recipient: str | None, where: str | None, s3_url: str | None,
             s3_endpoint: str | None, s3_region: str, s3_access_key: str | None, s3_secret_key_stdin: bool,
             off: bool) -> None:
    """Back the cluster up on a schedule (like k3s's etcd snapshots: every 12 h, 5 kept), into
    a directory or an S3 bucket; the first backup is made at once."""
    client = Client.from_config()
    if off:
        client.request("DELETE", "/v1/backups/schedule")
        click.echo("scheduled backups stopped; the backups already made stay where they are")
        return
    if not recipient or bool(where) == bool(s3_url):
        raise click.UsageError("give --recipient (the age public key) and one of --dir or --s3; or --off")
    body = {"every": every, "keep": keep, "recipient": _recipient(recipient)}
    if where:
        body["dir"] = where
    else:
        bucket, _, prefix = s3_url.removeprefix("s3://").partition("/")
        if not s3_url.startswith("s3://") or not s3_endpoint or not s3_access_key or not s3_secret_key_stdin:
            raise click.UsageError("--s3 s3://BUCKET/PREFIX needs --s3-endpoint, --s3-access-key and the secret "
                                   "key on standard input with --s3-secret-key-stdin")
        body["s3"] = {"endpoint": s3_endpoint, "bucket": bucket, "prefix": prefix, "region": s3_region,
                      "access_key": s3_access_key, "secret_key": click.get_text_stream("stdin").readline().strip()}
    got = client.request("PUT", "/v1/backups/schedule", body)
    click.echo(f"a backup every {_period(got['every_s'])} into {_where(got)}, the newest {got['keep']} kept; "
               "the first one is made now (`vcapp backup status`)")


def _where(sched: dict) -> str:
    return backup_target.describe(sched) + ("" if sched.get("s3") else " on the controller's machine")


@backup.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@api_errors
def status(as_json: bool) -> None:
    """The backup schedule and how its last run went."""
    got = Client.from_config().get("/v1/backups")
    if as_json:
        print_json(got)
        return
    sched, last = got.get("schedule"), got.get("last")
    if not sched:
        click.echo("no scheduled backups: `vcapp backup schedule --recipient KEY --s3 s3://BUCKET/PREFIX ...` "
                   "or `--dir DIR`")
    else:
        click.echo(f"every {_period(sched['every_s'])} into {_where(sched)}, {sched['keep']} kept, "
                   f"encrypted to {sched['recipient'][:16]}...")
    if last:
        rows = [["ok" if last["ok"] else "FAILED", last.get("name") or "-", f"{last.get('bytes', 0) / 1e6:.1f} MB",
                 last.get("machine", "-"), last.get("error") or ""]]
        click.echo(table(["LAST RUN", "FILE", "SIZE", "MACHINE", "ERROR"], rows))


def _period(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
