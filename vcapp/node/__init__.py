"""The node daemon (`vcapp node run`, node/daemon.py): keeps this machine's etcd member, API
server, mesh agent and liveness lease going, runs the node loops on every tick (loops.py:
fence, CRL, registry, storage, runtime, router, mesh paths, repositories) and, on the machine
holding the controller election, the controller and the leader loops (placer, metrics
history, storage replication)."""
