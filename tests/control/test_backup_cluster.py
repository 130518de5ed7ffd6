"""Issue 18 item 6: back a cluster up, lose every machine's disk, found a new cluster from the
backup on fresh machines, and find the app serving its data.

The first cluster (3 machines on one LAN) runs an app pushed with git (a Dockerfile FROM the
tiny busybox image): a secret, a volume whose files its release command wrote (one owned by
another user, with its own mode), a photo in its bucket, an end-user token, the app's access
set to tokens. `vcapp
backup create` writes a backup encrypted to an age key made off the cluster, to the admin's
disk; `vcapp backup schedule` has the controller write one into a directory at once.
Then the whole simulated cluster is torn down (its disks deleted) and three new machines come
up; `vcapp backup restore` with the wrong key refuses and founds nothing; with the right one
(the scheduled backup) it
founds the cluster, the others join, and what users and the admin had works again: the page
from the volume, the secret, owners and modes, the bucket's photo, the old admin token, the old end-user token.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.control.conftest import ControlCluster, start_machines
from tests.storage.test_volumes_cluster import s3
from vcapp.dev.rigs.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

APP = "notes"
DOCKERFILE = """\
FROM localhost/vcapp/tiny:latest
CMD ["httpd", "-f", "-p", "8080", "-h", "/data"]
"""
VCAPP_TOML = 'port = 8080\n\n[health]\npath = "/index.html"\n'
# The release command writes the data the app serves, and a file another user owns.
PROCFILE = ("release: echo \"notes for $TOKEN_OWNER\" > /data/index.html && mkdir -p /data/private && "
            "echo diary > /data/private/diary.txt && chown 1234:1234 /data/private/diary.txt && "
            "chmod 0640 /data/private/diary.txt\n")
# The secret and the private file's content, as the app sees them.
CHECK = "echo owner=$TOKEN_OWNER; cat /data/private/diary.txt"
PUSH_TIMEOUT = 600
SERVE_TIMEOUT = 240  # the storage's first start on the new cluster, then placement and mount
UP_TIMEOUT = 120


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(path), "-c", "user.name=Alice", "-c", "user.email=alice@example.com",
                           *args], check=True, capture_output=True, text=True).stdout


def page(cc: ControlCluster) -> str | None:
    """What the app's instance answers on its own machine."""
    proc = cc.vcapp("home-1", "ps", APP, "--json", check=False)
    rows = [r for r in (json.loads(proc.stdout) if proc.returncode == 0 else [])
            if r.get("host_port") and r["state"] == "running"]
    got = rows and cc.sim.run(rows[0]["node"], "curl", "-sf", "--max-time", "3",
                              f"http://127.0.0.1:{rows[0]['host_port']}/index.html", check=False)
    return got.stdout.strip() if got and got.returncode == 0 else None


def visit(cc: ControlCluster, token: str) -> subprocess.CompletedProcess:
    """An end user's request through home-1's node router, with their token."""
    return cc.sim.run("home-1", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                      "-H", f"Host: {APP}.apps.test", "-H", f"Authorization: Bearer {token}",
                      f"http://{cc.sim.addr('home-1')}:7080/index.html", check=False)


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    """The admin's age key pair, on the admin's own disk, and a stranger's."""
    where = tmp_path_factory.mktemp("admin-keys")
    out = {}
    for who in ("admin", "stranger"):
        out[who] = where / f"{who}.txt"
        subprocess.run(["age-keygen", "-o", str(out[who])], check=True, capture_output=True)
    return out


def test_a_backup_restored_on_fresh_machines_serves_the_app_with_its_data(make_sim, tmp_path_factory, keys):
    old = start_machines(make_sim(home=3, office=0), tmp_path_factory.mktemp("tiny"))
    old.vcapp("home-1", "apps", "create", APP, "--memory", "64M", "--volume", "data:/data")
    old.vcapp("home-1", "secrets", "set", APP, "TOKEN_OWNER=alice")
    old.vcapp("home-1", "volumes", "create", APP, "data", "--size", "64M")
    old.vcapp("home-1", "buckets", "create", APP)
    repo = tmp_path_factory.mktemp("laptop") / APP
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for name, text in {"Dockerfile": DOCKERFILE, "vcapp.toml": VCAPP_TOML, "Procfile": PROCFILE}.items():
        (repo / name).write_text(text)
        git(repo, "add", name)
    git(repo, "commit", "-q", "-m", "v1")
    url = f"http://admin:{old.admin_token}@{old.sim.addr('home-1')}:7180/git/{APP}.git"
    pushed = old.sim.run("home-3", "git", "-C", str(repo), "push", url, "main", check=False, timeout=PUSH_TIMEOUT)
    assert pushed.returncode == 0, pushed.stderr
    old.wait(lambda: page(old) == "notes for alice", SERVE_TIMEOUT, "the app serving what its release wrote")
    assert s3(old, "home-1", APP, "home-1", "put", APP) == "stored 6000"  # a photo in the app's bucket
    before = old.vcapp("home-1", "run", APP, "--", "sh", "-c", CHECK, check=False)
    assert before.stdout.splitlines()[-2:] == ["owner=alice", "diary"], before.stdout
    user_token = json.loads(old.vcapp("home-1", "tokens", "create", APP, "--name", "alice-phone", "--json").stdout)
    old.vcapp("home-1", "access", APP, "token")
    old.wait(lambda: visit(old, "vcapp_not_a_token").stdout == "401", 60, "the app asking visitors for a token")
    assert visit(old, user_token["token"]).stdout == "200"

    # A backup, made by home-2's API, written to the admin's disk.
    backups = tmp_path_factory.mktemp("backups")
    began = time.monotonic()
    made = old.vcapp("home-2", "backup", "create", "--recipient", str(keys["admin"]), "-o", str(backups))
    print(f"backup create: {time.monotonic() - began:.1f} s, {made.stdout.strip()}")
    files = list(backups.glob("vcapp-backup-acme-*.tar.age"))
    assert len(files) == 1, (made.stdout, made.stderr)
    assert "1 apps, 1 images, 1 volumes, 1 buckets" in made.stdout, made.stdout
    assert b"notes for alice" not in files[0].read_bytes()  # encrypted: nothing readable without the key
    refused = old.vcapp("home-2", "backup", "create", "--recipient", "age1short", "-o", str(backups), check=False)
    assert refused.returncode != 0 and "age-keygen" in refused.stderr, refused.stderr

    # The schedule's first backup is made at once, by the controller, into the directory.
    scheduled = tmp_path_factory.mktemp("nas")
    old.vcapp("home-1", "backup", "schedule", "--every", "12h", "--keep", "5", "-r", str(keys["admin"]),
              "--dir", str(scheduled))
    last = wait_for(lambda: (json.loads(old.vcapp("home-1", "backup", "status", "--json").stdout).get("last")),
                    180, "the first scheduled backup", interval=2)
    assert last["ok"], last
    backup = scheduled / last["name"]
    assert backup.is_file() and backup.stat().st_size == last["bytes"], last
    # Opened with the admin's key: the secret is in it (to be sealed again), the cluster key is not.
    opened = subprocess.run(["age", "-d", "-i", str(keys["admin"]), str(backup)], capture_output=True, check=True).stdout
    cluster_key = base64.b64decode((old.sim.dc.host_dir("home-1") / "data" / "keys" / "cluster.key").read_text())
    assert b"alice" in opened and cluster_key not in opened and base64.b64encode(cluster_key) not in opened

    # Every machine's disk is lost.
    old.sim.dc.down()

    new = ControlCluster(make_sim(home=3, office=0), ["home-1", "home-2", "home-3"])
    new.boot_daemons()
    wrong = new.vcapp("home-1", "backup", "restore", str(backup), "--identity", str(keys["stranger"]),
                      "--site", "home", check=False)
    assert wrong.returncode != 0 and "could not be decrypted" in wrong.stderr, wrong.stderr
    assert not (new.sim.dc.host_dir("home-1") / "data" / "node.json").exists()  # founded nothing

    began = time.monotonic()
    out = new.vcapp("home-1", "backup", "restore", str(backup), "--identity", str(keys["admin"]), "--site", "home")
    print(f"backup restore: {time.monotonic() - began:.1f} s")
    restored_at = time.monotonic()
    assert "restored: notes; volumes notes/data; buckets notes" in out.stdout, (out.stdout, out.stderr)
    assert "image of notes in the registry of home-1" in out.stderr, out.stderr
    new.join_token = re.search(r"vcjoin_\S+", out.stdout).group(0)
    for host in ("home-2", "home-3"):
        new.join(host)
    new.wait(lambda: len(new.all_up() or {}) == 3, UP_TIMEOUT, "3 machines up in the restored cluster")

    wait_for(lambda: page(new) == "notes for alice", SERVE_TIMEOUT, "the restored app serving its volume's data",
             detail=lambda: new.vcapp("home-1", "ps", APP, check=False).stdout + out.stderr)
    print(f"restored app serving {time.monotonic() - restored_at:.1f} s after the restore ended")
    began = time.monotonic()
    ran = wait_for(lambda: (r := new.vcapp("home-1", "run", APP, "--", "sh", "-c", CHECK, check=False)).returncode == 0
                   and r, 120, "the private file readable", interval=2)
    print(f"private file readable {time.monotonic() - began:.1f} s after the app served")
    assert ran.stdout.splitlines()[-2:] == ["owner=alice", "diary"], ran.stdout

    # The bucket is back with its photo, opened with the keys the app has now.
    wait_for(lambda: s3(new, "home-1", APP, "home-1", "get", APP) == "got 6000", 60, "the photo in the restored bucket")

    # Owner and mode as the volume keeps them (the filer's record of the file).
    listing = wait_for(lambda: new.sim.run("home-1", "curl", "-sf", "-H", "Accept: application/json",
                                           f"http://{new.sim.addr('home-1')}:8888/volumes/{APP}/data/private/",
                                           check=False).stdout, 60, "home-1's filer answering")
    diary = next(e for e in json.loads(listing)["Entries"] if e["FullPath"].endswith("/diary.txt"))
    assert (diary["Uid"], diary["Gid"], diary["Mode"] & 0o777) == (1234, 1234, 0o640), diary

    # The old admin token logs in; the old end-user token still opens the app.
    login = new.sim.run("home-3", "vcapp", "login", f"http://{new.sim.addr('home-3')}:7180", "--token-stdin",
                        input=old.admin_token, check=False)
    assert login.returncode == 0, login.stderr
    apps = json.loads(new.vcapp("home-3", "apps", "--json").stdout)
    assert [a["name"] for a in apps] == [APP], apps
    assert visit(new, "vcapp_not_a_token").stdout == "401"  # the access policy came back too
    # and the old end-user token opens the app (once it has rolled onto its new bucket keys)
    wait_for(lambda: visit(new, user_token["token"]).stdout == "200", 60, "the old end-user token letting in")
    history = new.vcapp("home-3", "events", "--json").stdout
    assert "restored from the backup of" in history
