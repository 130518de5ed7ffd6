"""buildpacks: detection and Containerfile templates for apps without a Dockerfile.

Owns: the table language -> (detect, Containerfile template) and the base "stack" images.
Pure data and detection; building is done by builder/.
"""
