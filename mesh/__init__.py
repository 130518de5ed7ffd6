"""mesh: a WireGuard overlay between all machines and the edge, across NATs.

Owns: keys (the private key never leaves its machine), endpoint discovery, UDP hole
punching, relay fallback and roaming. Must not touch: cluster state beyond its own keys
and endpoints, containers, routing of HTTP.

Modules:
    auth      join credentials (HMAC of node|mesh IP under the cluster's mesh key) and
              the per-request proof of them
    keys      this host's WireGuard key pair (0600 under $VCAPP_DATA_DIR/mesh/)
    wg        wireguard-go and its UAPI socket
    coord     the coordination protocol (messages drawn there) and a machine's client
    registry  the edge's record of node -> mesh IP, public key, LAN endpoints
    server    the edge's HTTP service: coordination, TCP relay upgrade, UDP probe echo
    relay     the TCP relay framing, the edge's session and the machine's UDP<->TCP shim
    paths     pure path decisions (lan / direct / relay-udp / relay-tcp) with their timers
    probe     RTT over the overlay
    status    the status file and its table
    agent     the machine daemon (`vcapp mesh up`)
    edge      the edge daemon (`vcapp mesh edge`), a WireGuard hub that relays

How the control plane starts it:
    edge:     vcapp mesh edge --listen 0.0.0.0:8443 --mesh-key-file K [--wg-port 51820]
    machine:  vcapp mesh up --coord http://<edge>:8443/_mesh --node N --mesh-ip 100.96.x.y
                            --credential-file C        (C = auth.issue_credential(K, N, ip))
    both as services restarted at boot; `vcapp mesh status [--json]` on any of them.
"""
