"""router: the edge (public ingress, TLS, subdomain routing, end-user token checks) and the
node-side routing of requests to local containers, both driven through Caddy's admin API.

Must not touch: placement, containers, cluster membership.
"""
