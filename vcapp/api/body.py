"""Reading request bodies: JSON objects only, refused with a readable 400 otherwise."""

from __future__ import annotations

import json

from flask import request

from vcapp.errors import BadRequest


def json_body(required: bool = True) -> dict:
    """The request's JSON object; `{}` for an empty body when not `required`."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise BadRequest("request body is empty; send a JSON object (Content-Type: application/json)")
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, not {type(data).__name__}")
    return data
