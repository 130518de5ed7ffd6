"""`vcapp volumes create|list`, `vcapp buckets create|list` and `vcapp buckets backend
set|show|clear`: replicated app volumes, per-app S3 buckets, and where the buckets live
(vcapp/state/volumes.py, vcapp/state/bucketbackend.py, storage/)."""

from __future__ import annotations

import sys

import click

from vcapp.cli.client import Client
from vcapp.cli.output import ago, api_errors, print_json, table
from vcapp.errors import BadRequest
from vcapp.state.apps import app_name, parse_volume_size
from vcapp.state.bucketbackend import check_body

# The cluster's first volume starts the storage cluster on every machine: up to ~90 s.
CREATE_TIMEOUT = 180.0
HEADERS = ["APP", "VOLUME", "SIZE", "CREATED"]


@click.group()
def volumes() -> None:
    """Replicated app volumes: data kept on three machines, mounted where the app runs."""


@volumes.command("create")
@click.argument("app")
@click.argument("name")
@click.option("--size", default="1G", show_default=True, help="Quota, e.g. 512M or 10G (can grow later).")
@api_errors
def create(app: str, name: str, size: str) -> None:
    """Create volume NAME of APP; mount it with `[[mounts]]` in vcapp.toml or --volume NAME:/path."""
    body = {"name": name, "size": parse_volume_size(size)}
    click.echo(f"creating volume {name} of {app} (the first volume also starts the storage cluster)...")
    rec = Client.from_config().request("POST", f"/v1/apps/{app_name(app)}/volumes", body, timeout=CREATE_TIMEOUT)
    click.echo(f"volume {rec['app']}/{rec['name']} ready: {rec['size_mb']} MB, kept on 3 machines "
               f"(2 while only 2 are up)")
    if rec.get("rolled"):
        click.echo(f"{rec['app']} restarts to take the new size (`vcapp ps {rec['app']}`)")


@volumes.command("list")
@click.argument("app", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@api_errors
def list_(app: str | None, as_json: bool) -> None:
    """List volumes (of APP) and the storage's replication state."""
    answer = Client.from_config().get("/v1/volumes", app=app)
    if as_json:
        print_json(answer)
        return
    rows = [[v["app"], v["name"], f"{v['size_mb']}M", ago(v.get("created_at"))] for v in answer["volumes"]]
    click.echo(table(HEADERS, rows) if rows else "no volumes yet: `vcapp volumes create APP NAME --size 1G`")
    st = answer["storage"]
    copies = {"healthy": "3 copies", "degraded": "degraded: 2 copies until a machine returns"}
    click.echo(f"storage: {st.get('state')}" + (f" ({copies[st['state']]})" if st.get("state") in copies else ""))


@click.group()
def buckets() -> None:
    """Per-app S3 buckets: on the cluster's replicated storage, or on an existing S3 service."""


@buckets.command("create")
@click.argument("app")
@api_errors
def create_bucket(app: str) -> None:
    """Give APP an S3 bucket and keys only it can use (in its env: BUCKET_NAME, AWS_*)."""
    click.echo(f"creating the bucket of {app} (on the built-in storage, the first bucket or volume also "
               "starts the storage cluster)...")
    rec = Client.from_config().request("POST", f"/v1/apps/{app_name(app)}/bucket", {}, timeout=CREATE_TIMEOUT)
    where = (f"the S3 service at {rec['endpoint']}" if rec.get("endpoint")
             else "their own machine's S3 gateway")
    click.echo(f"bucket {rec['bucket']} ready; {app}'s instances restart with BUCKET_NAME, AWS_ACCESS_KEY_ID, "
               f"AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL_S3 ({where}) in their env")


@buckets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@api_errors
def list_buckets(as_json: bool) -> None:
    """List the apps' buckets and where each lives."""
    found = Client.from_config().get("/v1/buckets")["buckets"]
    if as_json:
        print_json(found)
        return
    rows = [[b["app"], b["bucket"], b.get("endpoint") or "built-in", ago(b.get("created_at"))] for b in found]
    click.echo(table(["APP", "BUCKET", "BACKEND", "CREATED"], rows) if rows
               else "no buckets yet: `vcapp buckets create APP`")


@buckets.group("backend")
def backend() -> None:
    """Where new buckets go: the built-in storage, or an S3 service you already run."""


@backend.command("set")
@click.option("--endpoint", required=True, help="The S3 service's URL, e.g. https://s3.example.com or "
                                                 "http://10.0.0.5:9000.")
@click.option("--kind", required=True, type=click.Choice(["iam", "minio"]),
              help="How per-app keys are made: iam (AWS IAM API: AWS, SeaweedFS) or minio (MinIO's admin API).")
@click.option("--access-key", required=True, help="The admin access key of the service.")
@click.option("--secret-key-stdin", is_flag=True, help="Read the admin secret key from stdin (else it is prompted for).")
@click.option("--region", default="", help="Region of the buckets (AWS); also given to the apps as AWS_REGION.")
@click.option("--bucket-prefix", default="vcapp-", show_default=True,
              help="Bucket of app APP: <prefix>APP (bucket names are global on AWS: pick one of your own).")
@click.option("--iam-endpoint", default="",
              help="Kind iam: the IAM API's URL if not the S3 endpoint (AWS: https://iam.amazonaws.com).")
@api_errors
def backend_set(endpoint: str, kind: str, access_key: str, secret_key_stdin: bool, region: str,
                bucket_prefix: str, iam_endpoint: str) -> None:
    """Put new buckets on an existing S3 service. Its admin key is checked first; nothing is
    stored if the service cannot be reached or refuses it."""
    body = {"endpoint": endpoint, "kind": kind, "access_key": access_key, "secret_key": _secret_key(secret_key_stdin),
            "region": region, "bucket_prefix": bucket_prefix, "iam_endpoint": iam_endpoint}
    check_body(body)
    click.echo(f"checking the key with the S3 service at {endpoint}...")
    shown = Client.from_config().request("PUT", "/v1/buckets/backend", body, timeout=CREATE_TIMEOUT)
    click.echo(f"new buckets go to {shown['endpoint']} as {shown['bucket_prefix']}APP "
               f"(per-app keys through {shown['kind']}); `vcapp buckets create APP` makes one")


def _secret_key(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise BadRequest("give the admin secret key on stdin with --secret-key-stdin "
                         "(it never goes on the command line)")
    return click.prompt("admin secret key", hide_input=True)


@backend.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@api_errors
def backend_show(as_json: bool) -> None:
    """Show where new buckets go (the secret key is never shown)."""
    shown = Client.from_config().get("/v1/buckets/backend")
    if as_json:
        print_json(shown)
        return
    if shown["backend"] == "builtin":
        click.echo("buckets go to the built-in storage (replicated on the cluster's machines); "
                   "`vcapp buckets backend set` uses an existing S3 service instead")
        return
    rows = [["endpoint", shown["endpoint"]], ["kind", shown["kind"]], ["access key", shown["access_key"]],
            ["region", shown.get("region") or "-"], ["buckets", f"{shown.get('bucket_prefix') or ''}APP"],
            ["set", f"{ago(shown.get('set_at'))} by {shown.get('by')}"]]
    if shown.get("iam_endpoint"):
        rows.insert(2, ["IAM endpoint", shown["iam_endpoint"]])
    click.echo("buckets go to an external S3 service:")
    width = max(len(name) for name, _ in rows)
    click.echo("\n".join(f"  {name.ljust(width)}  {value}" for name, value in rows))


@backend.command("clear")
@api_errors
def backend_clear() -> None:
    """Put new buckets on the built-in storage again (refused while buckets exist)."""
    Client.from_config().request("DELETE", "/v1/buckets/backend")
    click.echo("new buckets go to the built-in storage")
