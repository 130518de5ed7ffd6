"""builder: turns a pushed source tree into an OCI image and pushes it to the cluster registry.

Owns: buildah invocations, build limits, the layer cache, locally built base images, the
cluster registry process. Must not touch: placement, running containers, git.

Entry points:
    builder.build.build(tree, app, release, registry, on_line=..., spawn=..., limits=...,
                        cgroup_parent=..., stacks_from=Share) -> BuildResult  (raises builder.errors.*)
    builder.stacks.ensure_archive(stack) / ensure_loaded(stack, spawn, share=Share(registries, authfile,
                        exclusive))   (a stack: pulled, loaded or made, then shared)
    builder.registry.start(address, storage, config_path, spawn=...) / stop(process)
"""
