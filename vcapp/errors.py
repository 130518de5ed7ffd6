"""One error type for the control plane: an HTTP status and a message a person can act on.

The API turns it into a JSON response in one place; the CLI prints the message.
"""

from __future__ import annotations


class VcError(Exception):
    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(VcError):
    status = 400


class Unauthorized(VcError):
    status = 401


class Forbidden(VcError):
    status = 403


class NotFound(VcError):
    status = 404


class Conflict(VcError):
    status = 409


class PayloadTooLarge(VcError):
    status = 413


class Unavailable(VcError):
    status = 503
