"""vcapp dev: a whole realistic cluster on one machine, in network namespaces (like kind).

A backbone namespace stands for the internet, with the edge and a client host on it; each
site is a NAT router with machines on its LAN; every machine has its own namespace,
hostname, data and podman storage, and its processes can be powered off for real.
"""
