"""The node daemon (`vcapp node run`): keeps this machine's etcd member, API server and
liveness lease going, and when elected runs the cluster controller."""
