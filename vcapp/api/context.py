"""Per-request access to the API's configuration and the cluster store."""

from __future__ import annotations

from flask import current_app, g

from vcapp.api.config import ApiConfig
from vcapp.state.store import Store

EXTENSION = "vcapp"


def config() -> ApiConfig:
    return current_app.extensions[EXTENSION]


def store() -> Store:
    if "store" not in g:
        g.store = config().store()
    return g.store
