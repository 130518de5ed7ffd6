"""builder: turns a pushed source tree into an OCI image and pushes it to the cluster registry.

Owns: buildah invocations, build limits, the layer cache, locally built base images.
Must not touch: placement, running containers, git.
"""
