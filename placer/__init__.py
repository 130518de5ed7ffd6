"""placer: the leader-elected scheduler.

Owns: the pure placement function (cluster state -> plan: where each instance runs, which
move off dead machines, which machine builds). The loop that reads etcd, calls it and
applies the plan is vcapp/node/placer_loop.py. Must not touch: containers, the network,
storage engines, etcd.
"""
