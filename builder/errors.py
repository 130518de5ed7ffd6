"""Typed errors of the builder; each message says what happened and what to do next."""

from __future__ import annotations


class BuildError(RuntimeError):
    """A build failed. `tail` holds the last lines of its log, which the message ends with."""

    def __init__(self, message: str, tail: list[str] | None = None):
        self.tail = list(tail or [])
        self.reason = message
        text = message
        if self.tail:
            text += "\n--- last lines of the build log ---\n" + "\n".join(self.tail)
        super().__init__(text)


class BuildTimeout(BuildError):
    """A build ran over its time limit and was killed."""


class NothingToBuild(BuildError):
    """The tree has no Dockerfile and no buildpack recognises it; nothing was started."""


class StackError(BuildError):
    """A base stack image could not be made or loaded."""


class PushError(BuildError):
    """The image was built but could not be pushed to the cluster registry."""
