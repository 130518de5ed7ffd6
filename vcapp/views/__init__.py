"""Projections of the state for a reader: the routes tables (ingress.py), the placer's
snapshot (placement.py), the dashboard's overview, the health warnings and the Prometheus
text. Read records, compute, write nothing."""
