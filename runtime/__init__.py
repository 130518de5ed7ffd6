"""runtime: the node agent that turns this machine's assignments into Podman containers.

Owns: containers, their limits, health checks and logs on one machine, and reporting
their state. Must not touch: placement decisions, other machines, the CLI or the API.
"""
