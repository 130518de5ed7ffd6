"""Issue 8 on the real cluster: an app's volume on replicated storage that the node daemons
run themselves (no storage command by hand), mounted where the instance runs, followed by
the instance when its machine dies; storage degraded with one machine down and healed
without admin action when it returns; an app destroyed with its volume, bucket and images,
and nothing of them found by an app made again with its name. Tests run in file order on
one cluster."""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import time

import pytest

from builder.baseimage import TINY_IMAGE
from storage import mount
from storage.compaction import COMPACT_AT_CHUNKS
from storage.plan import storage_dir
from tests.control.conftest import three_machines
from vcapp.dev.rigs.waiting import wait_for
from vcapp.state import keys

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

RECORDS = 1000
BATCH = 100  # records appended per fsync
# On first start the app appends RECORDS lines in batches, fsyncing each batch (busybox
# `sync FILE` is fsync(2)), then publishes what it finds on the volume: the record count, its
# checksum and whether it wrote them itself (fresh=yes) or found them there (fresh=no).
NOTES = (
    "mkdir -p /www /tmp; f=/data/records.txt; "
    "if [ -f $f ]; then fresh=no; else fresh=yes; i=1; "
    f"while [ $i -le {RECORDS} ]; do echo \"record $i $(date +%s%N)\" >> /tmp/batch; "
    f"if [ $((i % {BATCH})) -eq 0 ]; then cat /tmp/batch >> $f.part && sync $f.part && rm /tmp/batch; fi; "
    "i=$((i+1)); done; mv $f.part $f; sync $f; fi; "
    "echo \"records=$(wc -l < $f) md5=$(md5sum < $f | cut -d' ' -f1) fresh=$fresh\" > /www/index.html; "
    "exec httpd -f -p 8080 -h /www")
PAGE_WAIT_S = 180     # placement, the storage cluster's first start (~30 s), mount, 1000 records
FAILOVER_WAIT_S = 150  # lease expiry, placement, SeaweedFS noticing a dead master, mount
HEAL_WAIT_S = 180     # the machine boots, its volume server registers, the missing copies are made
LOG_WAIT_S = 30       # a podman unpause on a loaded host
KILLED: list[str] = []  # the machine the failover test powered off
# Publishes its environment (where the bucket keys land) and serves.
SHOW_ENV = "mkdir -p /www; env > /www/env.txt; echo ok > /www/index.html; exec httpd -f -p 8080 -h /www"
# Run on a machine: S3 with an app's own keys (read as the admin can, with the cluster key).
S3_CLIENT = """
import sys
from minio import Minio
from vcapp.machine import NodeConfig
from vcapp.state import secrets
from vcapp.state.store import Store
app, gateway, action, bucket, name = sys.argv[1:6]
keys = secrets.values_for(Store(NodeConfig.load().store_endpoints()), app)
s3 = Minio(gateway, keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"], secure=False, region="us-east-1")
try:
    if action == "put":
        import io
        data = ("photo " * 1000).encode()
        s3.put_object(bucket, name, io.BytesIO(data), len(data))
        print("stored", len(data))
    else:
        print("got", len(s3.get_object(bucket, name).read()))
except Exception as e:
    print("refused", getattr(e, "code", type(e).__name__))
"""


@pytest.fixture(scope="module")
def cc(make_sim, tmp_path_factory):
    return three_machines(make_sim, tmp_path_factory)


def vcapp_json(cc, on: str, *args: str):
    proc = cc.vcapp(on, *args, "--json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None


def healthy(cc, app: str, on: str) -> list[dict]:
    rows = vcapp_json(cc, on, "ps", app) or []
    return [r for r in rows if r["state"] == "running" and r["health"] == "healthy"]


def page(cc, row: dict, path: str = "/index.html") -> str:
    """GET an instance on its own machine (containers publish on their machine's loopback only)."""
    proc = cc.sim.fetch(f"http://127.0.0.1:{row['host_port']}{path}", host=row["node"], timeout=5)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def volume_story(cc, on: str, app: str, volume: str = "data") -> str:
    """What machine `on` said of the app's volume: its weed mount's warnings and errors, and the
    daemon's lines on the app (for a failed assertion: a volume the app could not write)."""
    log = mount.log_path(storage_dir(cc.sim.dc.host_dir(on) / "data") / "log", app, volume)
    weed = [line for line in (log.read_text(errors="replace") if log.exists() else "").splitlines()
            if line[:1] in "EW"]
    node = cc.sim.dc.host_dir(on) / "log" / "vcapp-node.log"
    daemon = [line for line in node.read_text(errors="replace").splitlines() if app in line]
    return "\n".join([f"{on}'s weed mount of {app}/{volume}:", *weed[-20:], "its daemon:", *daemon[-20:]])


def storage_state(cc, on: str) -> str | None:
    answer = vcapp_json(cc, on, "volumes", "list")
    return answer["storage"].get("state") if answer else None


def test_bad_volume_requests_are_refused_and_change_nothing(cc):
    out = cc.vcapp("home-1", "volumes", "create", "ghost", "data", "--size", "64M", check=False)
    assert out.returncode != 0 and "no app ghost" in out.stderr, out.stderr
    out = cc.vcapp("home-1", "apps", "create", "twins", "--image", TINY_IMAGE, "--count", "2",
                   "--volume", "data:/data", check=False)
    assert out.returncode != 0 and "1 instance" in out.stderr, out.stderr
    out = cc.vcapp("home-1", "apps", "create", "badpath", "--image", TINY_IMAGE, "--volume", "data:data", check=False)
    assert out.returncode != 0 and "absolute path" in out.stderr, out.stderr
    listed = vcapp_json(cc, "home-1", "volumes", "list")
    assert listed == {"volumes": [], "storage": {"state": "off"}}
    assert "twins" not in cc.vcapp("home-1", "apps").stdout


def test_app_data_on_its_volume_follows_the_app_to_another_machine(cc):
    cc.vcapp("home-1", "apps", "create", "notes", "--image", TINY_IMAGE, "--port", "8080", "--command", NOTES,
             "--health-path", "/index.html", "--memory", "64M", "--volume", "data:/data:64M")
    # The instance may create the volume first, at the size its app gives: the same request then changes nothing.
    out = cc.vcapp("home-1", "volumes", "create", "notes", "data", "--size", "64M").stdout
    assert "ready: 64 MB" in out and "restarts" not in out
    row = cc.wait(lambda: healthy(cc, "notes", "home-1"), PAGE_WAIT_S, "notes healthy on its volume", interval=1)[0]
    first = page(cc, row)
    assert first.startswith(f"records={RECORDS} md5=") and first.endswith("fresh=yes"), \
        f"{first}\n{volume_story(cc, row['node'], 'notes')}"
    victim = row["node"]
    # The volume is a FUSE mount of the replicated storage on the instance's machine, not a local directory.
    mounts = cc.sim.run(victim, "cat", "/proc/self/mountinfo").stdout
    assert any("/volumes/notes/data " in line and "fuse" in line for line in mounts.splitlines()), mounts
    watcher = next(m for m in cc.machines if m != victim)
    killed = time.monotonic()
    cc.sim.dc.kill(victim)

    def moved():
        rows = [r for r in healthy(cc, "notes", watcher) if r["node"] != victim]
        return rows and page(cc, rows[0]).startswith("records=") and rows

    new = cc.wait(moved, FAILOVER_WAIT_S, "notes answering on another machine", interval=1)[0]
    took = time.monotonic() - killed
    after = page(cc, new)
    print(f"\nvolume failover: {victim} killed, notes answering on {new['node']} with its data after {took:.1f}s")
    assert after == first.replace("fresh=yes", "fresh=no"), (first, after)  # every record, same checksum
    # One machine down: writes go on (degraded, two copies) and are read back.
    cc.sim.run(new["node"], "podman", "exec", new["container"], "sh", "-c",
               "echo 'written while degraded' >> /data/late.txt && sync /data/late.txt")
    late = cc.sim.run(new["node"], "podman", "exec", new["container"], "cat", "/data/late.txt").stdout
    assert late.strip() == "written while degraded"
    cc.wait(lambda: storage_state(cc, watcher) == "degraded", 60, "storage shown degraded", interval=1)
    KILLED.append(victim)  # for the next test: the machine to bring back


def test_storage_heals_when_the_machine_returns(cc):
    assert KILLED, "the failover test must run first"
    victim = KILLED[0]
    cc.sim.dc.revive(victim)
    # What the victim's weed mount said before the power went is still there to read after the
    # boot (its run directory is gone): the log is kept with the machine's storage logs.
    log = mount.log_path(storage_dir(cc.sim.dc.host_dir(victim) / "data") / "log", "notes", "data")
    assert "This is SeaweedFS version" in log.read_text(errors="replace")
    cc.wait(lambda: storage_state(cc, "home-1" if victim != "home-1" else "home-2") == "healthy", HEAL_WAIT_S,
            "storage healthy again (3 copies) after the machine returned", interval=2)
    events = vcapp_json(cc, "home-2" if victim != "home-2" else "home-3", "events", "--limit", "500") or []
    kinds = [e["message"] for e in events if e["kind"] == "storage"]
    assert any(m.startswith("storage degraded") for m in kinds) and any(m.startswith("storage healthy")
                                                                        for m in kinds), kinds


# Shows the marks found on its volume, then adds its own (`life`): an instance of an app made
# again shows "life-1" only if the first app's volume data reached it.
KEEPER = ("mkdir -p /www; echo \"seen=$(cat /data/mark.txt 2>/dev/null | tr '\\n' ' ' || true)\" > /www/index.html; "
          "echo life-{life} >> /data/mark.txt; sync /data/mark.txt; exec httpd -f -p 8080 -h /www")
# Run on a machine: HEAD of a manifest in a cluster registry, with the machines' credential.
MANIFEST_STATUS = """
import sys
from builder import registry
from vcapp.machine import registry_credential
print(registry.manifest_status(sys.argv[1], registry_credential(), sys.argv[2], sys.argv[3]))
"""


def push_image(cc, on: str, app: str, repo: str = "apps", tag: str = "1") -> str:
    """Push the tiny image into `on`'s registry as <repo>/<app>:<tag>, as a deploy does (a
    release image, or a build step's layer in cache/<app>); its digest."""
    run = cc.sim.dc.run_dir(on)
    target = f"docker://{cc.sim.addr(on)}:5000/{repo}/{app}:{tag}"
    cc.sim.run(on, "buildah", "push", "--tls-verify=false", "--authfile", str(run / "registry" / "auth.json"),
               "--digestfile", f"/tmp/{app}.digest", TINY_IMAGE, target, timeout=120)
    return cc.sim.run(on, "cat", f"/tmp/{app}.digest").stdout.strip()


def manifest_status(cc, on: str, app: str, digest: str, repo: str = "apps") -> str:
    return cc.sim.run(on, sys.executable, "-c", MANIFEST_STATUS, f"{cc.sim.addr(on)}:5000", f"{repo}/{app}",
                      digest, check=False).stdout.strip()


def app_keys(cc, on: str, app: str) -> dict[str, int]:
    """key -> mod revision of everything etcd keeps of the app (the whole store's revision moves
    with every machine's status reports, so the app's own keys are what must stay unchanged)."""
    found = {}
    for prefix in (f"/vc/apps/{app}", f"/vc/volumes/{app}/", f"/vc/buckets/{app}", f"/vc/secrets/{app}",
                   f"/vc/releases/{app}/", keys.APP_TOKENS):
        out = json.loads(cc.etcd(on, "get", "--prefix", prefix, "-w", "json").stdout)
        found.update({base64.b64decode(kv["key"]).decode(): kv["mod_revision"] for kv in out.get("kvs", [])
                      if not prefix == keys.APP_TOKENS or f'"app":"{app}"' in base64.b64decode(kv["value"]).decode()
                      .replace(" ", "")})
    return found


def keeper(cc, on: str, app: str, life: int) -> None:
    cc.vcapp(on, "apps", "create", app, "--image", TINY_IMAGE, "--port", "8080", "--command", KEEPER.format(life=life),
             "--health-path", "/index.html", "--memory", "32M", "--volume", "data:/data")
    assert "ready" in cc.vcapp(on, "volumes", "create", app, "data").stdout  # the default size: no race with a mount
    assert "ready" in cc.vcapp(on, "buckets", "create", app).stdout


def test_a_destroyed_apps_volume_bucket_tokens_and_images_do_not_reach_an_app_made_again(cc):
    on, registry_machine, app = "home-2", "home-3", "keeper"
    keeper(cc, on, app, life=1)

    def seen() -> str:
        """The marks a healthy instance found on the volume: "seen=..."."""
        rows = healthy(cc, app, on)
        return rows and page(cc, rows[0])

    # The first instance finds nothing; one restarted for the bucket's keys finds its own mark.
    assert cc.wait(seen, PAGE_WAIT_S, f"{app} healthy with its volume", interval=1) in ("seen=", "seen=life-1")
    assert s3(cc, on, app, on, "put", app) == "stored 6000"
    token = json.loads(cc.vcapp(on, "tokens", "create", app, "--name", "alice", "--json").stdout)
    digest = push_image(cc, registry_machine, app)
    assert manifest_status(cc, registry_machine, app, digest) == "200"
    step = push_image(cc, registry_machine, app, repo="cache", tag="0" * 64)  # a build step's layer
    assert manifest_status(cc, registry_machine, app, step, repo="cache") == "200"

    before = app_keys(cc, on, app)
    refused = cc.vcapp(on, "apps", "destroy", app, "--yes", check=False)
    assert refused.returncode != 0, refused.stdout
    assert f"vcapp apps destroy {app} --confirm {app}" in refused.stderr and f"volume {app}/data" in refused.stderr
    wrong = cc.vcapp(on, "apps", "destroy", app, "--confirm", "other", check=False)
    assert wrong.returncode != 0 and "does not match" in wrong.stderr, wrong.stderr
    assert app_keys(cc, on, app) == before  # nothing changed
    assert s3(cc, on, app, on, "get", app) == "got 6000" and healthy(cc, app, on)

    started = time.monotonic()
    out = cc.vcapp(on, "apps", "destroy", app, "--confirm", app).stdout
    took = time.monotonic() - started
    print(f"\ndestroy with a volume, a bucket and an image: {took:.1f} s")
    assert f"app {app} destroyed" in out and "volume(s) data" in out and f"bucket {app}" in out, out
    assert manifest_status(cc, registry_machine, app, digest) == "404"
    assert manifest_status(cc, registry_machine, app, step, repo="cache") == "404"
    assert app_keys(cc, on, app) == {}
    assert not any(v["app"] == app for v in vcapp_json(cc, on, "volumes", "list")["volumes"])

    keeper(cc, on, app, life=2)
    again = cc.wait(seen, PAGE_WAIT_S, f"{app} made again, healthy on its volume", interval=1)
    assert again in ("seen=", "seen=life-2"), again  # never life-1: the old volume's data is gone
    assert s3(cc, on, app, on, "get", app) == "refused NoSuchKey"
    assert vcapp_json(cc, on, "tokens", "list", app) == []
    assert token["token"] not in cc.vcapp(on, "tokens", "list", app).stdout
    assert "destroyed" in cc.vcapp(on, "apps", "destroy", app, "--confirm", app).stdout


APPENDS = 500
# A log written one record at a time, each through the descriptor that wrote it with an fsync
# (dd conv=fsync), as a database's journal is; it goes on from the records already there.
APPENDER = ("mkdir -p /www && echo writing > /www/index.html && httpd -p 8080 -h /www && "
            "i=$(( $(cat /data/log 2>/dev/null | wc -l) + 1 )); "
            f"while [ $i -le {APPENDS} ]; do echo id=$i | dd of=/data/log oflag=append conv=notrunc,fsync 2>/dev/null "
            "|| exit 1; i=$((i+1)); done; echo done > /www/index.html; exec sleep 1000000")


def chunks_of(cc, on: str, path: str) -> int | None:
    """How many chunks the filer lists for a volume file (each fsync'd append adds one)."""
    out = cc.sim.run(on, "curl", "-s", "-H", "Accept: application/json",
                     f"http://{cc.sim.addr(on)}:8888{path}?metadata=true", check=False, timeout=20)
    try:
        return len(json.loads(out.stdout).get("chunks") or [])
    except ValueError:
        return None


def test_a_log_fsynced_one_record_at_a_time_stays_few_chunked_and_keeps_every_record(cc):
    """Each fsync'd append is a chunk of its own, and every fsync sends the file's whole chunk
    list to the filer and etcd: unchecked, the 500th append costs several times the first. The
    machine running the app compacts the file in place while the app is paused (storage/
    compaction.py); the app goes on appending across it and loses nothing."""
    on, app = "home-2", "journal"
    cc.vcapp(on, "apps", "create", app, "--image", TINY_IMAGE, "--port", "8080", "--command", APPENDER,
             "--health-path", "/index.html", "--memory", "32M", "--volume", "data:/data:64M")

    def finished():
        rows = healthy(cc, app, on)
        return rows and page(cc, rows[0]) == "done" and rows[0]

    row = cc.wait(finished, PAGE_WAIT_S + 120, f"{app} wrote its {APPENDS} records", interval=2)
    path = f"/volumes/{app}/data/log"

    def logged() -> list[str]:
        log = cc.sim.dc.host_dir(row["node"]) / "log" / "vcapp-node.log"
        return [line for line in log.read_text(errors="replace").splitlines() if f"volume {app}/" in line]

    def said() -> str:
        return f"chunks now: {chunks_of(cc, row['node'], path)}; the machine's log:\n" + "\n".join(logged()[-10:])

    # Without compaction the file keeps a chunk per append; with it, never COMPACT_AT_CHUNKS for
    # longer than a look (30 s): compacted while the app appended, or once it is done.
    wait_for(lambda: (chunks_of(cc, row["node"], path) or APPENDS) < COMPACT_AT_CHUNKS, 90,
             f"the {APPENDS} appends' chunks compacted", interval=3, detail=said)
    # The machine says so once it has resumed the app: a podman unpause later, seconds on a
    # loaded host (a pass whose pause failed, the app frozen mid-write, says that and retries).
    wait_for(lambda: any("compacted from" in line for line in logged()), LOG_WAIT_S,
             "the compaction in the machine's log", interval=1, detail=said)
    text = cc.sim.run(row["node"], "podman", "exec", row["container"], "cat", "/data/log").stdout
    assert text.splitlines() == [f"id={i}" for i in range(1, APPENDS + 1)]
    assert [r["restarts"] for r in healthy(cc, app, on)] == [0]  # paused, never restarted


def s3(cc, on: str, app: str, gateway: str, action: str, bucket: str, name: str = "hello.txt") -> str:
    out = cc.sim.run(on, sys.executable, "-c", S3_CLIENT, app, f"{cc.sim.addr(gateway)}:8333", action, bucket,
                     name, check=False, timeout=60)
    return (out.stdout.strip().splitlines() or [out.stderr.strip()[-300:]])[-1]


def kill_filer(cc, on: str) -> None:
    """SIGKILL the filer of machine `on`, as a crash would; its storage agent starts it again."""
    state = json.loads((cc.sim.dc.run_dir(on) / "storage" / "filer.json").read_text())
    os.kill(state["pid"], signal.SIGKILL)


def test_bucket_objects_outlive_a_machine_and_only_their_app_can_read_them(cc):
    for app in ("photos", "other"):
        cc.vcapp("home-1", "apps", "create", app, "--image", TINY_IMAGE, "--port", "8080", "--command", SHOW_ENV,
                 "--health-path", "/index.html", "--memory", "32M")
        if app == "other":  # a filer that crashed a moment ago is waited for, not an error
            kill_filer(cc, "home-1")
        assert "ready" in cc.vcapp("home-1", "buckets", "create", app).stdout
    listed = vcapp_json(cc, "home-2", "buckets", "list")
    assert sorted(b["bucket"] for b in listed) == ["other", "photos"]

    def env_with_keys():
        rows = healthy(cc, "photos", "home-1")
        text = page(cc, rows[0], path="/env.txt") if rows else ""
        return "AWS_ACCESS_KEY_ID=" in text and (rows[0], text)

    row, env = cc.wait(env_with_keys, 120, "photos restarted with its bucket keys", interval=1)
    assert "BUCKET_NAME=photos" in env and f"AWS_ENDPOINT_URL_S3=http://{cc.sim.addr(row['node'])}:8333" in env
    # The instance reaches its machine's S3 gateway (anonymous: refused, but answered).
    probe = cc.sim.run(row["node"], "podman", "exec", row["container"], "sh", "-c",
                       "wget -q -O- $AWS_ENDPOINT_URL_S3/photos/ 2>&1", check=False)
    assert "403" in probe.stdout, probe.stdout
    writer, reader = "home-1", "home-2"
    assert s3(cc, reader, "photos", writer, "put", "photos") == "stored 6000"
    cc.sim.dc.kill(writer)
    cc.wait(lambda: s3(cc, reader, "photos", reader, "get", "photos") == "got 6000", 90,
            "the object read through another machine after the writer's machine died", interval=2)
    # Another app's keys open its own bucket only.
    assert s3(cc, reader, "other", reader, "get", "photos") == "refused AccessDenied"
    assert s3(cc, reader, "other", reader, "put", "photos", "intruder.txt") == "refused AccessDenied"
