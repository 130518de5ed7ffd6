"""The edge: its daemon (daemon.py, `vcapp edge run`: keeps the edge Caddy in step with the
cluster's routes) and its boot services (setup.py, `vcapp edge setup`)."""
