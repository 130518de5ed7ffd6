"""placer: the leader-elected scheduler.

Owns: a pure placement function (cluster state -> plan) and the small loop that applies
plans to etcd and moves instances off dead machines. Must not touch: containers, the
network, storage engines.
"""
