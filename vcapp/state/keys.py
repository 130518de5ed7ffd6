"""Where cluster state lives in etcd. One function per key family, so the layout is in one place.

    /vc/cluster                  {name, id, domain, edge, max_nodes, created_at}
    /vc/nodes/<name>             node record: site, labels, addr, api_url, resources, joined_at
    /vc/nodes-version            bumped by every join and removal (guards the 10-machine limit)
    /vc/mesh/revoked/<mesh ip>   {node, at}: a removed machine's overlay address; its mesh credential
                                 is refused at the edge and the address is never handed out again
    /vc/alive/<name>             bound to the node's lease: present while the node is up
    /vc/suspects/<name>          {peers: {peer: since}, at}: the machines <name> cannot reach (its
                                 probes time out), bound to its lease (vcapp/state/peerwatch.py)
    /vc/drained/<name>           {at, by}: the machine takes no instances; the placer moves its
                                 instances off, each new one healthy before the old stops
                                 (`vcapp node drain`, vcapp/state/membership.py)
    /vc/nodestate/<name>         {"state": "up"|"down", "since": t}: last transition the controller saw
    /vc/tokens/join/<id>         {name, hash, created_at, expires_at, uses, max_uses, revoked}
    /vc/tokens/admin/<id>        {name, hash, created_at, revoked}
    /vc/tokens/app/<sha256>      end-user access token: {id, app, app_generation, name, created_at,
                                 expires_at, revoked} (vcapp/state/apptokens.py)
    /vc/etcd/members/<name>      {member_id, peer_url}: machines that run an etcd member
    /vc/etcd/invite/<name>       {member_id, initial_cluster}: a machine asked to start an etcd learner
                                 (vcapp/state/etcd_members.py writes it; the invited machine's daemon
                                 reads it, starts its member and deletes it)
    /vc/etcd/ca                  {"cert": PEM}: the cluster's etcd CA certificate (vcapp/etcdtls.py)
    /vc/etcd/certs/<name>        {serial, addr, issued_at}: the etcd certificate a machine was given
    /vc/etcd/revoked/<serial>    {name, addr, at}: certificates of removed machines (etcd's CRL)
    /vc/etcd/defrag-turn         {node}: the one member defragmenting its database now, bound to a
                                 lease (vcapp/node/defrag_loop.py)
    /vc/events/<ms>-<rand>       {time, kind, node?, app?, message}
    /vc/election/<role>          {lease, node}: the leader of <role>, bound to its lease
    /vc/apps/<app>               app spec (placer/model.py) + revision, created_at (vcapp/state/apps.py)
    /vc/assign/<app>/<inst>      the placer's assignment of one instance (placer/model.py)
    /vc/pending/<app>            {"instances": {inst: reason}, "since": t}: instances without a machine
    /vc/status/<node>/<app>/<inst>  runtime report (runtime/supervisor.py), bound to <node>'s lease
    /vc/secrets/<app>            {"names": [...], "data": Fernet token of {name: value}} (vcapp/state/secrets.py)
    /vc/releases/<app>/<n:08d>   {number, sha, image, digest, time, who, config, status} (vcapp/state/releases.py);
                                 zero-padded so key order is release order
    /vc/builds/<app>/<n:08d>     {number, sha, ref, who, receiver, built_on, started, ended, seconds,
                                 result: building|succeeded|failed|refused, stage, reason, tail, release}:
                                 one record per push to a deploy branch (vcapp/state/builds.py; the newest
                                 KEEP per app, older ones pruned)
    /vc/buildlogs/<app>/<n:08d>  {"log": text, "cut": lines dropped}: that push's whole log, bounded
                                 (vcapp/state/builds.py MAX_LOG_BYTES)
    /vc/metrics/<kind>/<name>/<tier>/<start>  one chunk of a machine's ("node") or app's ("app")
                                 metrics history (vcapp/state/metrics.py: tiers, chunk shape, bounds)
    /vc/health/warnings          {id: {kind, severity, node?, app?, message, since}}: current warnings
    /vc/health/summary           {"apps": {app: {uptime_24h, uptime_7d, failovers_24h, failovers_7d}},
                                  "at": t} (vcapp/node/metrics_loop.py, every minute)
    /vc/storage/enabled          {since}: the cluster has volumes; every machine runs SeaweedFS
    /vc/storage/state            {code, state: healthy|degraded, live, counted, at, error} (vcapp/node/storage_loop.py)
    /vc/storage/writer/<app>/<v> the one machine writing a volume, bound to its lease (storage/guard.py)
    /vc/seaweedfs/...            the SeaweedFS filers' metadata (their etcd filer store: storage/plan.py
                                 filer_toml), written and read by the filers alone
    /vc/volumes/<app>/<name>     {app, name, size_mb, created_at} (vcapp/state/volumes.py)
    /vc/buckets/<app>            {app, bucket, backend, endpoint?, created_at}: the app's S3 bucket and
                                 where it lives: "builtin" or "external" (vcapp/state/volumes.py)
    /vc/settings/build-proxy     {url, username, password (sealed), set_at, by}: the forward proxy build
                                 steps reach package registries through (HTTP_PROXY...;
                                 vcapp/state/buildproxy.py); absent = they go direct
    /vc/settings/build-no-proxy  {hosts, set_at, by}: hosts builds reach directly beside the cluster's
                                 own (NO_PROXY; vcapp/state/buildproxy.py)
    /vc/settings/buckets         {kind, endpoint, region, bucket_prefix, access_key, secret (sealed), ...}:
                                 the external S3 service buckets go to; absent = built-in storage
                                 (vcapp/state/bucketbackend.py)
    /vc/settings/registries/<host>  {host, mirror, insecure, username, password (sealed), added_at, by}:
                                 a container registry's mirror and credentials for builds
                                 (vcapp/state/registries.py; host is host[:port], e.g. docker.io)
    /vc/requests/<node>          {hosts: {host: {requests, errors}}, at}: the node router's counters
                                 since its Caddy started, bound to its lease (vcapp/node/router_loop.py)
    /vc/meshpaths/<node>         {peer: {path, since}}: this machine's mesh path to each peer,
                                 bound to its lease (vcapp/node/metrics_loop.py)
    /vc/repos/<app>              {refs: {ref: sha}, holders: [node], at}: the app repository's
                                 branches and the machines holding them (vcapp/state/reposync.py)
    /vc/stacks/making/<stack>    {machine, since}: the one machine loading or making a buildpack stack
                                 (<name>-<suite>-<key>) for the cluster, bound to a lease of its own
                                 (vcapp/deploy/stackshare.py)
    /vc/routes/switch/<node>/<app>/<inst>  {at, host_port}: a runtime asks every router to stop
                                 sending to this instance's old container (published on host_port
                                 when it leaves the machine) before it stops it; the key's mod
                                 revision is what the routers acknowledge (vcapp/state/routeswitch.py)
    /vc/routes/applied/<node>    {revision, at}: the newest switch request <node>'s router has
                                 routes for, loaded in its Caddy, bound to its lease
    /vc/edge/certificates        {names: {host: {state, reason, not_after, since}}, at}: each served
                                 name's certificate as the edge reports it (vcapp/state/certificates.py)
    /vc/settings/backup          {every_s, keep, recipient, dir | s3, secret (sealed), set_at, by}: scheduled backups
                                 (vcapp/state/backups.py; made by node/backup_loop on the controller)
    /vc/backups/status           {at, ok, name, bytes, machine, error}: the last scheduled backup
"""

ROOT = "/vc/"  # every key below; the only prefix a machine may touch (vcapp/state/etcdauth.py)
CLUSTER = "/vc/cluster"
NODES = "/vc/nodes/"
NODES_VERSION = "/vc/nodes-version"
MESH_REVOKED = "/vc/mesh/revoked/"
ALIVE = "/vc/alive/"
DRAINED = "/vc/drained/"
SUSPECTS = "/vc/suspects/"
NODESTATE = "/vc/nodestate/"
JOIN_TOKENS = "/vc/tokens/join/"
ADMIN_TOKENS = "/vc/tokens/admin/"
APP_TOKENS = "/vc/tokens/app/"
ETCD_MEMBERS = "/vc/etcd/members/"
ETCD_INVITES = "/vc/etcd/invite/"
ETCD_CA = "/vc/etcd/ca"
ETCD_CERTS = "/vc/etcd/certs/"
ETCD_REVOKED = "/vc/etcd/revoked/"
ETCD_DEFRAG_TURN = "/vc/etcd/defrag-turn"
EVENTS = "/vc/events/"
ELECTION = "/vc/election/"
STORAGE_ENABLED = "/vc/storage/enabled"
STORAGE_STATE = "/vc/storage/state"
VOLUMES = "/vc/volumes/"
BUCKETS = "/vc/buckets/"
BUCKET_BACKEND = "/vc/settings/buckets"
SEAWEEDFS = "/vc/seaweedfs/"
STORAGE_WRITERS = "/vc/storage/writer/"
BUILD_PROXY = "/vc/settings/build-proxy"
BUILD_NO_PROXY = "/vc/settings/build-no-proxy"
REGISTRIES = "/vc/settings/registries/"
APPS = "/vc/apps/"
ASSIGN = "/vc/assign/"
PENDING = "/vc/pending/"
STATUS = "/vc/status/"
SECRETS = "/vc/secrets/"
RELEASES = "/vc/releases/"
BUILDS = "/vc/builds/"
BUILD_LOGS = "/vc/buildlogs/"
METRICS = "/vc/metrics/"
WARNINGS = "/vc/health/warnings"
HEALTH_SUMMARY = "/vc/health/summary"
MESHPATHS = "/vc/meshpaths/"
REQUESTS = "/vc/requests/"
REPOS = "/vc/repos/"
STACK_MAKERS = "/vc/stacks/making/"
ROUTE_SWITCHES = "/vc/routes/switch/"
ROUTES_APPLIED = "/vc/routes/applied/"
EDGE_CERTIFICATES = "/vc/edge/certificates"
BACKUP_SCHEDULE = "/vc/settings/backup"
BACKUP_STATUS = "/vc/backups/status"

# What a backup keeps (vcapp/deploy/backup.py): the cluster's desired state and history. The
# rest is made again by the machines of the cluster a restore founds (members, liveness,
# placements, reports, etcd's PKI, routes, metrics) or held elsewhere (the filers' metadata:
# the volumes' files travel as files).
BACKED_UP = (CLUSTER, APPS, SECRETS, RELEASES, BUILDS, ADMIN_TOKENS, APP_TOKENS, VOLUMES, BUCKETS, BUCKET_BACKEND,
             BUILD_PROXY, BUILD_NO_PROXY, REGISTRIES, BACKUP_SCHEDULE, EVENTS)


def node(name: str) -> str:
    return NODES + name


def mesh_revoked(mesh_ip: str) -> str:
    return MESH_REVOKED + mesh_ip


def alive(name: str) -> str:
    return ALIVE + name


def suspects(name: str) -> str:
    return SUSPECTS + name


def drained(name: str) -> str:
    return DRAINED + name


def nodestate(name: str) -> str:
    return NODESTATE + name


def join_token(token_id: str) -> str:
    return JOIN_TOKENS + token_id


def admin_token(token_id: str) -> str:
    return ADMIN_TOKENS + token_id


def app_token(token_hash: str) -> str:
    return APP_TOKENS + token_hash


def etcd_member(name: str) -> str:
    return ETCD_MEMBERS + name


def etcd_invite(name: str) -> str:
    return ETCD_INVITES + name


def etcd_cert(name: str) -> str:
    return ETCD_CERTS + name


def etcd_revoked(serial: str) -> str:
    return ETCD_REVOKED + serial


def election(role: str) -> str:
    return ELECTION + role


def app(name: str) -> str:
    return APPS + name


def storage_writer(app: str, volume: str = "") -> str:
    """The writer record of app/volume (storage/guard.py names it app/volume); with no
    volume, the prefix of every writer record of the app."""
    return f"{STORAGE_WRITERS}{app}/{volume}"


def volume(app: str, name: str) -> str:
    """An app's volume record; name "" gives the prefix of all of the app's volumes."""
    return f"{VOLUMES}{app}/{name}"


def bucket(app: str) -> str:
    return BUCKETS + app


def assign(app_name: str, instance: str = "") -> str:
    """One instance's assignment, or (no instance) the prefix of all of an app's."""
    return f"{ASSIGN}{app_name}/{instance}"


def pending(app_name: str) -> str:
    return PENDING + app_name


def status(node_name: str, app_name: str = "", instance: str = "") -> str:
    """A runtime report, or (fewer parts) the prefix of a node's or a node's app's reports."""
    if not app_name:
        return f"{STATUS}{node_name}/"
    return f"{STATUS}{node_name}/{app_name}/{instance}"


def secrets(app_name: str) -> str:
    return SECRETS + app_name


def release(app_name: str, number: int | None = None) -> str:
    """One release of an app, or (no number) the prefix of all of its releases."""
    return f"{RELEASES}{app_name}/" + ("" if number is None else f"{number:08d}")


def build(app_name: str, number: int | None = None) -> str:
    """One build record of an app, or (no number) the prefix of all of its build records."""
    return f"{BUILDS}{app_name}/" + ("" if number is None else f"{number:08d}")


def build_log(app_name: str, number: int | None = None) -> str:
    """One build's log, or (no number) the prefix of all of an app's build logs."""
    return f"{BUILD_LOGS}{app_name}/" + ("" if number is None else f"{number:08d}")


def metrics(subject: str) -> str:
    """The prefix of one subject's history chunks; subject is "node/<name>" or "app/<name>"."""
    return f"{METRICS}{subject}/"


def requests(node_name: str = "") -> str:
    return f"{REQUESTS}{node_name}"


def meshpaths(node_name: str) -> str:
    return MESHPATHS + node_name


def repo(app_name: str) -> str:
    return REPOS + app_name


def registry(host: str) -> str:
    return f"{REGISTRIES}{host}"


def stack_maker(stack: str) -> str:
    return STACK_MAKERS + stack


def route_switch(node_name: str, app_name: str, instance: str) -> str:
    return f"{ROUTE_SWITCHES}{node_name}/{app_name}/{instance}"


def routes_applied(node_name: str) -> str:
    return ROUTES_APPLIED + node_name


def name_of(key: str, prefix: str) -> str:
    return key[len(prefix):]
