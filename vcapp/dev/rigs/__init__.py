"""Rigs on the simulator for the test suite and the benches: a simulated cluster driven the
way a person at its machines would (sim.py), with vcapp running on three of them
(control.py), with only the mesh (mesh.py), with only etcd and SeaweedFS (storage.py), a lone
etcd on loopback (etcd.py), and the one polling wait they all use (waiting.py)."""
