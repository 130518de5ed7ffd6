"""gitserver: the smart-HTTP git server; a push to main starts a build and streams its log
back on the git side-band.

Owns: app repositories and push authentication. Must not touch: image building (it asks
builder/), containers or placement.
"""
