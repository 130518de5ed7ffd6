"""Issue 18 item 3: docs/install.md, run command for command on the simulator.

The guide's shell blocks are read from the file and run in order, each on the host its first
line names (`# on home-1`, `# on the edge`, `# on your laptop`, `# on every machine and the
edge`), as one `bash -e` script: a command that fails fails the test, with its output. The
test fills in what a person pastes and plays the internet's part, nothing else:

- `<join token>` and `<proxy URL>` in a command, and the secret a block's "# paste the X,
  then Ctrl-D" comment names (on its standard input), come from what earlier commands printed
  (the mesh key, the admin, edge and join tokens) or, for the proxy, from the simulator (its
  machines reach PyPI only through it);
- DNS: the laptop resolves the guide's names to the edge (its commands run with their own
  /etc/hosts, in a mount namespace of their own), Pebble's DNS resolves every name to the edge;
- Let's Encrypt: Pebble on the client host, handed to the edge's `vcapp edge setup` through
  VCAPP_ACME_CA / VCAPP_ACME_CA_ROOT, and trusted by the laptop (its CA bundle variables);
- systemd: a service `vcapp edge setup` prints for boot is started as the simulator's boot
  service (its exact command line); `cluster init` and `node join` start their daemon;
- a laptop with git set up (its author name and address);
- "every machine and the edge": the simulated hosts share this host's files, so
  `scripts/install` runs once, here, in this checkout (it finds everything in place);
- the guide's own waits ("when `vcapp nodes` shows it down"): before a block, the test waits
  for what the guide says the person waits for.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from builder import stacks
from buildpacks.stacks import STACKS
from vcapp.dev import platform
from vcapp.dev.rigs.acme import Pebble
from vcapp.dev.rigs.waiting import wait_for

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "install.md"
BLOCK = re.compile(r"```sh\n# on (?P<where>[^\n]+)\n(?P<body>.*?)```", re.S)
PASTE = re.compile(r"# paste the (?P<what>[\w ]+?), then Ctrl-D")
PLACEHOLDER = re.compile(r"<(join token|proxy URL)>")
EDGE_ADDR, DOMAIN = "203.0.113.10", "apps.example.com"
HOSTS = {"the edge": "edge", "your laptop": "client"}
# What each secret looks like in the output of the command that printed it (the newest wins).
SECRETS = {
    "mesh key": r"mesh key \(secret; shown once\):\s+([0-9a-f]{32,})",
    "admin token": r"admin token \(shown once[^)]*\):\s+(vcadm_\S+)",
    "edge token": r"edge token \S+ \(edge\) created; it is shown only now:\s+(vcadm_\S+)",
    "join token": r"(vcjoin_\S+)",
}
# A laptop whose git knows its user (the guide's commit needs an author).
LAPTOP_GIT = ("GIT_AUTHOR_NAME=Admin GIT_AUTHOR_EMAIL=admin@example.com GIT_COMMITTER_NAME=Admin "
              "GIT_COMMITTER_EMAIL=admin@example.com")
BOOT_SERVICE = re.compile(r"^  (vcapp-[\w-]+\.service): (.+)$", re.M)
BLOCK_TIMEOUT = 900.0  # s: the first push builds the app (its stack is made beforehand)
DOWN_WAIT = 90.0  # s: a dead machine is `down` within its lease (~10 s); generous for a loaded host
MOVE_WAIT = 180.0  # s: an instance placed elsewhere and healthy


class Guide:
    def __init__(self, sim, pebble: Pebble, work: Path):
        self.sim, self.pebble = sim, pebble
        self.outputs: list[str] = []
        self.hosts_file = work / "hosts"
        self.hosts_file.write_text(f"127.0.0.1 localhost\n{EDGE_ADDR} api.{DOMAIN} hello.{DOMAIN}\n")
        self.log: list[str] = []

    def secret(self, what: str) -> str:
        for out in reversed(self.outputs):
            found = re.findall(SECRETS[what], out)
            if found:
                return found[-1]
        raise AssertionError(f"the guide asks to paste the {what}, but no command printed one yet")

    def fill(self, body: str) -> str:
        def value(m: re.Match) -> str:
            if m.group(1) == "proxy URL":
                assert self.sim.dc.proxy_url, "the simulator has no proxy"
                return self.sim.dc.proxy_url
            return self.secret("join token")
        return PLACEHOLDER.sub(value, body)

    def run(self, where: str, body: str) -> str:
        pastes = PASTE.findall(body)
        assert len(pastes) <= 1, f"one paste per block: {body}"
        stdin = self.secret(pastes[0]) + "\n" if pastes else ""
        script = self.fill(body)
        if where == "every machine and the edge":
            proc = subprocess.run(["bash", "-e", "-c", script], cwd=REPO, capture_output=True, text=True,
                                  timeout=BLOCK_TIMEOUT)
        else:
            host = HOSTS.get(where, where)
            cmd = ["bash", "-e", "-c", script]
            env = ""
            if host == "client":  # the laptop: the guide's names resolve to the edge, Pebble's root trusted
                root = shlex.quote(str(self.pebble.root))
                env = (f"export REQUESTS_CA_BUNDLE={root} CURL_CA_BUNDLE={root} GIT_SSL_CAINFO={root} "
                       f"{LAPTOP_GIT}\n")
                cmd = ["unshare", "-m", "bash", "-c", 'mount --bind "$1" /etc/hosts && exec bash -e -c "$2"', "-",
                       str(self.hosts_file), env + script]
            elif host == "edge":
                cmd = ["env", f"VCAPP_ACME_CA={self.pebble.directory}",
                       f"VCAPP_ACME_CA_ROOT={self.pebble.listen_cert}", *cmd]
            proc = self.sim.run(host, *cmd, check=False, timeout=BLOCK_TIMEOUT, input=stdin)
        self.log.append(f"# on {where}\n{script}\n--- exit {proc.returncode}\n{proc.stdout[-3000:]}"
                        f"{proc.stderr[-3000:]}")
        assert proc.returncode == 0, "\n\n".join(self.log[-3:]) + self.edge_log() + self.machine_errors()
        self.outputs.append(proc.stdout + proc.stderr)
        if where == "the edge":
            self.boot_services(proc.stdout)
        return proc.stdout

    def edge_log(self) -> str:
        """The edge's Caddy log tail, for failure messages."""
        path = platform.edge_caddy_dir(self.sim.dc) / "caddy.log"
        lines = path.read_text(errors="replace").splitlines()[-25:] if path.exists() else []
        return "\n\nedge Caddy log:\n" + "\n".join(line[:400] for line in lines)

    def machine_errors(self) -> str:
        """Each machine's router errors and daemon warnings (a 502 at the edge may be a node
        router's answer, logged only there), for failure messages."""
        out = []
        for host in sorted(p.name for p in (self.sim.dc.dir / "hosts").iterdir()):
            for log in sorted([*self.sim.dc.host_dir(host).glob("**/router/caddy.log"),
                               *self.sim.dc.host_dir(host).glob("**/router/access.log")]):
                lines = [l for l in log.read_text(errors="replace").splitlines()
                         if '"level":"error"' in l and '"status":503' not in l]
                out += [f"{host} {log.name}: {l[:600]}" for l in lines[-8:]]
            for log in sorted(self.sim.dc.host_dir(host).glob("**/node.log")):
                lines = [l for l in log.read_text(errors="replace").splitlines()
                         if " WARNING " in l or " ERROR " in l or "Traceback" in l]
                out += [f"{host} daemon: {l[:400]}" for l in lines[-8:]]
        return "\n\nmachines' errors:\n" + "\n".join(out)

    def boot_services(self, out: str) -> None:
        """What systemd would start at boot (the edge has no systemd here): the printed units,
        restarted 2 s after they exit as their Restart=always, RestartSec=2 say (the HTTPS
        entry exits while no machine has registered with the mesh hub yet)."""
        running = set(self.sim.dc.status_services("edge"))
        for unit, command in BOOT_SERVICE.findall(out):
            if unit not in running:
                self.sim.dc.add_service("edge", unit, ["sh", "-c", f"while :; do {command}; sleep 2; done"])

    def laptop(self, *args: str, check: bool = True):
        return self.sim.run("client", "unshare", "-m", "bash", "-c", 'mount --bind "$1" /etc/hosts && shift && '
                            'exec "$@"', "-", str(self.hosts_file), "env",
                            f"REQUESTS_CA_BUNDLE={self.pebble.root}", f"CURL_CA_BUNDLE={self.pebble.root}",
                            *args, check=check, timeout=60)

    def node_state(self) -> dict[str, str]:
        out = self.laptop("vcapp", "nodes", "--json", check=False)
        if out.returncode != 0:
            return {}
        return {n["name"]: "up" if n.get("up") else "down" for n in json.loads(out.stdout)}

    def answers(self) -> bool:
        out = self.laptop("curl", "-sS", "--max-time", "5", f"https://hello.{DOMAIN}/", check=False)
        return out.returncode == 0 and "Hello from vcapp" in out.stdout

    def instances_on(self, machine: str) -> list:
        out = self.laptop("vcapp", "ps", "hello", "--json", check=False)
        rows = json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else [{"node": machine}]
        return [r for r in rows if r.get("node") == machine]


@pytest.fixture(scope="module")
def guide(make_sim, tmp_path_factory):
    stacks.ensure_archive(STACKS["python"], on_line=print)  # made on this host once (tests share it)
    sim = make_sim(home=2, office=3)
    assert sim.addr("edge") == EDGE_ADDR  # the guide's edge address is the simulator's
    return Guide(sim, Pebble(sim, tmp_path_factory.mktemp("pebble")),
                 tmp_path_factory.mktemp("guide"))


def test_the_install_guide_runs_from_blank_machines_to_an_app_and_through_machine_changes(guide, record_property):
    blocks = [(m["where"], m["body"]) for m in BLOCK.finditer(GUIDE.read_text())]
    assert len(blocks) >= 15, "the guide's runnable blocks: ```sh blocks whose first line is `# on HOST`"
    started = time.monotonic()
    first_app = None
    for where, body in blocks:
        if "vcapp node remove home-2" in body:
            # The guide: a machine dies; `vcapp nodes` shows it down; its apps are back elsewhere.
            guide.sim.dc.kill("home-2")
            wait_for(lambda: guide.node_state().get("home-2") == "down", DOWN_WAIT, "home-2 shown down")
            wait_for(guide.answers, MOVE_WAIT, "hello answering again after home-2 died")
        if where == "office-2" and "vcapp node leave" in body:
            # The guide: leave once `vcapp ps hello` shows nothing on the drained machine.
            wait_for(lambda: not guide.instances_on("office-2"), MOVE_WAIT, "hello's instances off office-2")
        out = guide.run(where, body)
        if first_app is None and "Hello from vcapp" in out:
            first_app = time.monotonic() - started
    assert first_app is not None, "the guide's first curl printed the app's page"
    record_property("blank_to_first_app_s", round(first_app, 1))
    print(f"\nfrom blank machines to the first app answering, following docs/install.md: {first_app:.1f} s")
    nodes = guide.node_state()
    assert set(nodes) == {"home-1", "office-1", "office-3"} and set(nodes.values()) == {"up"}, nodes
    domains = {row["host"]: row for row in json.loads(guide.laptop("vcapp", "domains", "--json").stdout)}
    assert domains[f"hello.{DOMAIN}"]["state"] == domains[f"api.{DOMAIN}"]["state"] == "issued", domains
