"""mesh: a WireGuard overlay between all machines and the edge, across NATs.

Owns: keys (the private key never leaves its machine), endpoint discovery, UDP hole
punching, relay fallback and roaming. Must not touch: cluster state beyond its own keys
and endpoints, containers, routing of HTTP.
"""
