"""Cached token checks: token hash -> TokenRecord (or None), at most one lookup per TTL.

The lookup callable is the control plane's (etcd-backed in production). Unknown hashes are
cached too, so a client hammering with a wrong token costs one lookup per TTL, and the cache
is bounded so random tokens cannot grow it without limit.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable

from router.tokens import TokenRecord

# A revoked token must stop working within 5 s (issue 7): a 2 s cache leaves room for the
# store's own propagation, and still spares the store all but one lookup per token per 2 s.
CHECK_CACHE_TTL = 2.0
# Enough for every real token of a small cluster many times over; oldest entries go first.
MAX_CACHED = 10_000

Lookup = Callable[[str], "TokenRecord | None"]


class LookupUnavailable(RuntimeError):
    """The token store could not be asked (e.g. etcd unreachable); nothing was decided."""


class TokenChecker:
    def __init__(self, lookup: Lookup, ttl: float = CHECK_CACHE_TTL, max_cached: int = MAX_CACHED,
                 clock: Callable[[], float] = time.monotonic):
        self._lookup = lookup
        self._ttl = ttl
        self._max = max_cached
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, TokenRecord | None]] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, token_hash: str) -> TokenRecord | None:
        """The record for a token hash, from the cache when it is fresh enough."""
        now = self._clock()
        with self._lock:
            hit = self._cache.get(token_hash)
            if hit and now - hit[0] < self._ttl:
                return hit[1]
        try:
            found = self._lookup(token_hash)
        except Exception as e:
            raise LookupUnavailable(f"token store lookup failed: {e}") from e
        with self._lock:
            self._cache[token_hash] = (now, found)
            self._cache.move_to_end(token_hash)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return found
