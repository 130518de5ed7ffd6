"""storage: replicated app data on SeaweedFS: per-app volumes and S3 buckets, replica
placement across machines and sites, degrade and heal.

Must not touch: placement of app instances, containers beyond mounting volumes for them.
Never imports the CLI or the API; they call in here.

Modules, one concern each:
    replication  pure: which replication code fits the live machines ("xyz", site = data
                 center, machine = rack); healthy / degraded
    plan         pure: which SeaweedFS processes each machine runs, with which flags
    agent        per machine: converge the running processes to the plan
    host         how we run programs on a machine (LocalHost for the node agent)
    shell        `weed shell` from Python; volume.list parsing
    volumes      create volumes (path rule per volume), degrade and heal
    mount        weed mount of a volume + the check that the mount is real
    compaction   a volume file's many small chunks (one per fsync) rewritten into few
    buckets      per-app bucket + identity allowed only on it
    guard        at most one writer machine per volume (etcd lease semantics)
    fastfail     unreachable routes to dead machines so SeaweedFS clients fail over fast

Interface for the control plane (all take the ClusterPlan, a Host to act from and the
weed binary path, `storage.host.weed_binary()`):
    plan_cluster(machines, etcd_endpoints) -> ClusterPlan     when membership changes
    agent.converge(plan, LocalHost(), data_dir, run_dir, weed) in each node's loop
    volumes.create_volume(plan, host, app, name, size_mb, live_sites, weed)
    buckets.create_bucket(plan, host, app, live_sites, weed) -> env vars for the app
    volumes.set_rules(plan, host, live_sites, weed) -> {"code", "state", ...}
        on every change of the live machines (lease expiry, revive, join): lowers the
        rules when machines die (degraded), raises them when they return; show "state"
        in `vcapp status`
    volumes.heal(plan, host, code, weed) -> ids: then copies the data of the degraded
        period (healed); minutes, under the admin lock. converge_replication does both.
    fastfail.mark_dead(host, addr) on every live machine when a machine's lease expires,
    fastfail.mark_alive(host, addr) when it is back (failover 27 s -> 3 s, see the module)
For the runtime:
    guard.mount_for_writing(store, plan, host, app, volume, instance, host_path, run_dir, weed)
        -> host path to bind-mount; raises WriterConflict / StorageError
    mount.verify_mounted(path) right before starting the container; mount.unmount_volume(path)
"""
