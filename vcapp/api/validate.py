"""Validation shared by the admin API and the CLI: durations, token ids, names, counts.

The CLI checks input with these functions before it sends a request, and the API checks the
same fields with the same functions when the request arrives, so both say the same thing.
Pure functions; every error is a BadRequest whose message says what a valid value looks like.
"""

from __future__ import annotations

import math
import re

from vcapp.errors import BadRequest

# Patterns are matched whole (fullmatch): `$` would also match before a final newline.
DURATION = re.compile(r"(\d+)\s*([smhdw]?)")
UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_DURATION = 366 * 86400  # a token that outlives a year is forgotten, not managed
TOKEN_ID = re.compile(r"[0-9a-f]{8}")
EVENT_ID = re.compile(r"\d{13}-[0-9a-f]{4}")
NEVER = ("0", "never")


def parse_duration(value: str | int | float | None, what: str = "expires") -> int:
    """Seconds from `3600`, "90s", "30m", "1h", "2d", "1w"; 0 for "0" or "never"."""
    if isinstance(value, bool) or value is None:
        raise BadRequest(f"{what}: give a duration like 30m, 1h, 2d (or 0/never)")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise BadRequest(f"{what}: {value} is not a duration; give seconds between 0 (never) and 366d")
        seconds = int(value)
    else:
        text = str(value).strip().lower()
        if text in NEVER:
            return 0
        match = DURATION.fullmatch(text)
        if not match:
            raise BadRequest(f"{what}: {value!r} is not a duration; use a number with s, m, h, d or w "
                             "(e.g. 30m, 1h, 2d), or 0/never")
        seconds = int(match.group(1)) * UNIT_SECONDS[match.group(2)]
    if seconds < 0 or seconds > MAX_DURATION:
        raise BadRequest(f"{what}: must be between 0 (never) and 366d")
    return seconds


def format_duration(seconds: float) -> str:
    """The short form a person reads: 45s, 12m, 3h, 2d."""
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_uses(value: str | int | None) -> int:
    """How many machines a join token admits; 0 = any number until it expires."""
    if value is None:
        return 0
    try:
        uses = int(value)
    except (TypeError, ValueError, OverflowError):
        raise BadRequest(f"uses: {value!r} is not a whole number; give how many machines may join (0 = no limit)") from None
    if isinstance(value, bool) or uses < 0 or uses > 1000:
        raise BadRequest("uses: must be between 0 (no limit) and 1000")
    return uses


def token_name(value: str | None, required: bool) -> str:
    """A label for who or what holds a token."""
    name = "" if value is None else str(value).strip()
    if required and not name:
        raise BadRequest("name: give the token a name (who or what holds it), e.g. --name alice-laptop")
    if len(name) > 64:
        raise BadRequest("name: at most 64 characters")
    if has_control(name):
        raise BadRequest(f"name: {name!r} has control characters (newline, tab, ...); use printable text")
    return name


def has_control(text: str) -> bool:
    """Whether `text` holds a control character (C0, DEL, C1): never part of a name."""
    return any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 for c in text)


def token_id(value: str) -> str:
    if not TOKEN_ID.fullmatch(value):
        raise BadRequest(f"{value!r} is not a token id (8 hex characters); list the tokens to see their ids")
    return value


def event_id(value: str) -> str:
    if not EVENT_ID.fullmatch(value):
        raise BadRequest(f"after: {value!r} is not an event id (like 1700000000000-ab12); "
                         "use the id of an event you were given")
    return value


def bounded_int(value: str | None, what: str, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise BadRequest(f"{what}: {value!r} is not a whole number") from None
    if not low <= number <= high:
        raise BadRequest(f"{what}: must be between {low} and {high}")
    return number
