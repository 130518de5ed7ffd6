"""Reading request bodies: JSON objects only, of bounded size, with finite numbers; refused
with a readable 4xx otherwise.

Every API route takes at most MAX_JSON_BODY bytes of body. `limit_body` runs before
authentication (so also for the public /v1/join) and refuses a declared Content-Length
above the limit with 413 before a byte of the body is read; a body without a length
(chunked) is cut at the limit while it is read. Routes that stream a large body on purpose
are marked @streams_body (a machine's build tarball); git pushes are served beside the
API (vcapp/api/git.py) and never pass here. The server (cheroot, vcapp/api/serve.py) hands
the view the body as it arrives and closes the connection after a 413, so a refused body is
never read in full.
"""

from __future__ import annotations

import json
import math
from typing import Callable, TypeVar

from flask import current_app, request

from vcapp.errors import BadRequest, PayloadTooLarge

View = TypeVar("View", bound=Callable)

# The biggest JSON an admin sends is an env or a set of secrets (each bounded far below this,
# vcapp/appconfig.py and vcapp/state/secrets.py); a megabyte is room to spare, and small next to
# etcd's 1.5 MiB request limit.
MAX_JSON_BODY = 1 << 20
TOO_LARGE = ("request body too large ({size}): the API takes at most {limit} bytes (1 MiB) of JSON; "
             "keep large values out of env and secrets (files belong in the image or a volume)")
PAST_LIMIT = TOO_LARGE.format(size="it went past the limit while read", limit=MAX_JSON_BODY)


def streams_body(view: View) -> View:
    """Mark a view whose body is a stream it bounds itself, not JSON."""
    view.streams_body = True
    return view


def limit_body() -> None:
    """before_request: refuse a body over MAX_JSON_BODY before reading it (see the module docstring)."""
    if request.routing_exception is not None or request.endpoint is None:
        return
    if getattr(current_app.view_functions[request.endpoint], "streams_body", False):
        return
    length = request.content_length
    if length is not None and length > MAX_JSON_BODY:
        raise PayloadTooLarge(TOO_LARGE.format(size=f"{length} bytes", limit=MAX_JSON_BODY))
    # A body without a length is read at most one byte past the limit (json_body refuses it then).
    request.max_content_length = MAX_JSON_BODY + 1


def _no_constant(name: str) -> float:
    raise BadRequest(f"request body: {name} is not a number vcapp takes; give a finite number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadRequest(f"request body: {text} is too large a number; give a finite number in range")
    return value


def json_body(required: bool = True) -> dict:
    """The request's JSON object; `{}` for an empty body when not `required`."""
    raw = request.get_data(cache=True)
    if len(raw) > MAX_JSON_BODY:
        raise PayloadTooLarge(PAST_LIMIT)
    if not raw.strip():
        if required:
            raise BadRequest("request body is empty; send a JSON object (Content-Type: application/json)")
        return {}
    try:
        data = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, not {type(data).__name__}")
    return data
