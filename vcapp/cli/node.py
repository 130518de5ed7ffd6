"""`vcapp node ...`: this machine's membership (join, leave, the daemon) and removing others."""

from __future__ import annotations

import click

from vcapp.cli.client import Client, ClientError
from vcapp.cli.cluster import join, leave, run
from vcapp.cli.output import api_errors
from vcapp.cli.upgrade import upgrade


@click.group()
def node() -> None:
    """Machines: join this one, leave, run the daemon, upgrade it, drain or remove another."""


node.add_command(join)
node.add_command(leave)
node.add_command(run)
node.add_command(upgrade)


# The API waits up to 12 s for etcd to accept the member's removal (vcapp/api/nodes.py), on top
# of the user's and record's deletion: a loaded cluster takes more than a plain request's 15 s.
REMOVE_TIMEOUT_S = 60.0


@node.command("remove")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@api_errors
def remove(name: str, yes: bool) -> None:
    """Remove machine NAME from the cluster (its etcd member too). Its apps move elsewhere."""
    if not yes:
        click.confirm(f"remove machine {name} from the cluster?", abort=True)
    client = Client.from_config()
    try:
        # Sent again if a proxy loses the answer (the edge and the node routers reload as the
        # machine goes): a removal changes nothing the second time.
        answer = client.request("DELETE", f"/v1/nodes/{name}", timeout=REMOVE_TIMEOUT_S, idempotent=True)
    except ClientError as e:
        if not (client.resent and e.status == 404):
            raise
        answer = {}  # the first attempt removed it; its answer was lost on the way back
    extra = " and its etcd member" if answer.get("etcd_member_removed") else ""
    click.echo(f"machine {name}{extra} removed; to bring it back, join it again with a join token")
    if answer.get("etcd_member_pending"):
        click.echo("its etcd member goes as soon as etcd allows it (etcd refuses membership changes for a few "
                   "seconds after its members restart); `vcapp events` shows etcd.member.removed then")


@node.command("drain")
@click.argument("name")
@click.option("--storage", is_flag=True,
              help="Move its copies of app data to other machines too (it needs three others up).")
@api_errors
def drain(name: str, storage: bool) -> None:
    """Move every instance off machine NAME (each new one healthy before the old stops) and place
    nothing there until `vcapp node undrain NAME`. For maintenance: the machine stays up. With
    --storage, its copies of app data move too, so it can be switched off for good."""
    answer = Client.from_config().post(f"/v1/nodes/{name}/drain", {"storage": True} if storage else {})
    data = " and its copies of app data" if answer.get("storage") else ""
    if not answer["changed"]:
        click.echo(f"machine {name} was already drained{data and ' with its storage'}; "
                   "`vcapp ps APP` shows where instances run, `vcapp status` the storage")
        return
    click.echo(f"machine {name} drained: its instances{data} move to other machines; `vcapp status` shows it "
               f"drained{' and the data still moving' if data else ''}, `vcapp node undrain {name}` takes it back")


@node.command("undrain")
@click.argument("name")
@api_errors
def undrain(name: str) -> None:
    """Let machine NAME take instances again (nothing moves back by itself)."""
    answer = Client.from_config().post(f"/v1/nodes/{name}/undrain", {})
    click.echo(f"machine {name} takes instances again" if answer["changed"] else f"machine {name} was not drained")
