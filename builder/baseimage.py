"""Base images made on this machine from Debian packages; nothing is pulled from a registry.

`tiny`: a static busybox on `scratch` (2 MB), for tests and for tools that need a shell and
nothing else. Language stacks for buildpacks are made with debootstrap (see buildpacks/).
"""

from __future__ import annotations

import shutil
from pathlib import Path

TINY_IMAGE = "localhost/vcapp/tiny:latest"
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static: one binary, no shared libraries

TINY_CONTAINERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh"]
"""


# A web server on the tiny image whose page is one line: an app that builds from a Dockerfile
# in a second, with nothing to pull, for deploys measured end to end.
TINY_WEB_DOCKERFILE = """\
FROM {image}
RUN mkdir -p /www && echo "{page}" > /www/index.html
EXPOSE 8080
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
"""


def tiny_web_dockerfile(page: str, image: str = TINY_IMAGE) -> str:
    """A Dockerfile FROM the tiny image serving `page` (no quotes, no backslashes) on port 8080."""
    if any(c in page for c in '"\\$`\n'):
        raise ValueError(f"the page {page!r} must be plain text for the shell's echo")
    return TINY_WEB_DOCKERFILE.format(image=image, page=page)


def tiny_context(dest: Path) -> Path:
    """Write the build context of the tiny image into `dest` and return it."""
    if not BUSYBOX.exists():
        raise FileNotFoundError(f"{BUSYBOX} is missing: install Debian's busybox-static (scripts/install does)")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, dest / "busybox")
    (dest / "Containerfile").write_text(TINY_CONTAINERFILE)
    return dest


def tiny_build_command(context: Path, tag: str = TINY_IMAGE) -> list[str]:
    """buildah command that builds the tiny image from `context` (runc, layer cache on)."""
    return ["buildah", "bud", "--runtime", "/usr/sbin/runc", "--layers", "-t", tag, str(context)]
