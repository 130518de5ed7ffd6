"""vcapp: the CLI, the admin API, the cluster state model in etcd, tokens, the node daemon
entry point and the `vcapp dev` simulated cluster.

Owns: desired state (what admins asked for) and its validation. Must not touch: containers,
WireGuard, Caddy or SeaweedFS directly; the components below it converge the machines.
"""

__version__ = "0.1.0"
