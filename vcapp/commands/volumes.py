"""`vcapp volumes create|list` and `vcapp buckets create|list`: replicated app volumes and
per-app S3 buckets (vcapp/volumes.py, storage/)."""

from __future__ import annotations

import click

from vcapp.api.volumes import parse_size
from vcapp.apps import app_name
from vcapp.client import Client
from vcapp.commands.output import ago, api_errors, print_json, table

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
    body = {"name": name, "size": parse_size(size)}
    click.echo(f"creating volume {name} of {app} (the first volume also starts the storage cluster)...")
    rec = Client.from_config().request("POST", f"/v1/apps/{app_name(app)}/volumes", body, timeout=CREATE_TIMEOUT)
    click.echo(f"volume {rec['app']}/{rec['name']} ready: {rec['size_mb']} MB, kept on 3 machines "
               f"(2 while only 2 are up)")


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
    """Per-app S3 buckets on the cluster's replicated storage."""


@buckets.command("create")
@click.argument("app")
@api_errors
def create_bucket(app: str) -> None:
    """Give APP an S3 bucket and keys only it can use (in its env: BUCKET_NAME, AWS_*)."""
    click.echo(f"creating the bucket of {app} (the first bucket or volume also starts the storage cluster)...")
    rec = Client.from_config().request("POST", f"/v1/apps/{app_name(app)}/bucket", {}, timeout=CREATE_TIMEOUT)
    click.echo(f"bucket {rec['bucket']} ready; {app}'s instances restart with BUCKET_NAME, AWS_ACCESS_KEY_ID, "
               "AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL_S3 (their own machine's S3 gateway) in their env")


@buckets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@api_errors
def list_buckets(as_json: bool) -> None:
    """List the apps' buckets."""
    found = Client.from_config().get("/v1/buckets")["buckets"]
    if as_json:
        print_json(found)
        return
    rows = [[b["app"], b["bucket"], ago(b.get("created_at"))] for b in found]
    click.echo(table(["APP", "BUCKET", "CREATED"], rows) if rows else "no buckets yet: `vcapp buckets create APP`")
