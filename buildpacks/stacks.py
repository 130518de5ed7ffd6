"""Stack recipes: the base images buildpacks build FROM, as data.

A stack is a Debian root file system made with debootstrap (minbase + the language's
Debian packages) or, for static sites, Debian's static busybox alone. The image tag carries
a hash of the recipe, so a changed recipe is a new image and a cached archive is never
stale. Making the images is builder/stacks.py's job; this module only describes them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# Bump when the way a recipe becomes an image changes (not the recipe itself: that is hashed).
RECIPE_VERSION = 2
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

# Every stack: UTF-8, the app's port, and every TLS client pointed at the system CA bundle
# (which the builder replaces with the host's during builds, for corporate proxies).
COMMON_ENV = (
    ("LANG", "C.UTF-8"),
    ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
    ("PORT", "8080"),
    ("SSL_CERT_FILE", CA_BUNDLE),
)


@dataclass(frozen=True)
class Stack:
    """One base image recipe. `source` is "debootstrap" or "busybox"."""

    name: str
    packages: tuple[str, ...] = ()
    source: str = "debootstrap"
    suite: str = SUITE
    env: tuple[tuple[str, str], ...] = field(default=())

    def recipe(self) -> dict:
        return {
            "version": RECIPE_VERSION,
            "name": self.name,
            "source": self.source,
            "suite": self.suite,
            "packages": sorted(self.packages),
            "env": [list(kv) for kv in COMMON_ENV + self.env],
        }

    @property
    def key(self) -> str:
        """Short hash of the recipe: names the image tag and the cached archive."""
        blob = json.dumps(self.recipe(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def image(self) -> str:
        return f"localhost/vcapp/stack-{self.name}:{self.suite}-{self.key}"

    @property
    def alias(self) -> str:
        """Stable name for Dockerfiles to build FROM: the current recipe of this stack."""
        return f"localhost/vcapp/stack-{self.name}:{self.suite}"

    @property
    def environment(self) -> tuple[tuple[str, str], ...]:
        return COMMON_ENV + self.env


PYTHON_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
PYTHON_ENV = (("PYTHONUNBUFFERED", "1"), ("PIP_CERT", CA_BUNDLE), ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
              ("REQUESTS_CA_BUNDLE", CA_BUNDLE))
NODE_PACKAGES = ("nodejs", "npm", "ca-certificates")
NODE_ENV = (("NODE_EXTRA_CA_CERTS", CA_BUNDLE), ("npm_config_cafile", CA_BUNDLE),
            ("npm_config_update_notifier", "false"), ("npm_config_fund", "false"), ("npm_config_audit", "false"))
GO_PACKAGES = ("golang-go", "ca-certificates", "git")
GO_ENV = (("CGO_ENABLED", "0"), ("GOFLAGS", "-mod=mod"), ("GOTOOLCHAIN", "local"))

# Keyed by the name buildpacks and buildpacks/versions.py use: "<language>" is the default
# (bookworm) stack, "<language>-trixie" the newer language versions of the next release.
STACKS: dict[str, Stack] = {
    "python": Stack("python", PYTHON_PACKAGES, env=PYTHON_ENV),
    "python-trixie": Stack("python", PYTHON_PACKAGES, suite="trixie", env=PYTHON_ENV),
    "node": Stack("node", NODE_PACKAGES, env=NODE_ENV),
    "node-trixie": Stack("node", NODE_PACKAGES, suite="trixie", env=NODE_ENV),
    "go": Stack("go", GO_PACKAGES, env=GO_ENV),
    "go-trixie": Stack("go", GO_PACKAGES, suite="trixie", env=GO_ENV),
    "static": Stack("static", source="busybox"),
}


def stack(name: str) -> Stack:
    try:
        return STACKS[name]
    except KeyError:
        raise KeyError(f"no stack named {name!r}; known stacks: {', '.join(sorted(STACKS))}") from None
