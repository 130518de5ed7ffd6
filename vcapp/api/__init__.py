"""The admin API: a Flask app, JSON in and out, every route behind an admin token.

`create_app(config)` builds it; `vcapp.api.wsgi` is what gunicorn serves on every machine.
Routes live in one blueprint per concern (nodes, events, tokens, health, openapi); errors
become `{"error": message}` in `vcapp.api.errors` alone.
"""

from __future__ import annotations

from flask import Flask

from vcapp.api import auth, body, errors, events, health, nodes, openapi, tokens
from vcapp.api import apps as apps_routes
from vcapp.api import apptokens
from vcapp.api import builds, git, registries, releases, settings, volumes
from vcapp.api import dashboard
from vcapp.api.config import ApiConfig
from vcapp.api.context import EXTENSION

__all__ = ["ApiConfig", "create_app"]


def create_app(config: ApiConfig) -> Flask:
    app = Flask(__name__, static_folder=None)
    app.extensions[EXTENSION] = config
    app.json.sort_keys = False
    errors.register(app)
    app.before_request(body.limit_body)  # before authentication: public routes are bounded too
    auth.register(app)
    for module in (health, nodes, events, tokens, openapi):
        app.register_blueprint(module.bp)
    app.register_blueprint(apps_routes.bp)
    app.register_blueprint(apptokens.bp)
    app.register_blueprint(releases.bp)
    app.register_blueprint(volumes.bp)
    app.register_blueprint(settings.bp)  # GET /v1/settings, PUT /v1/settings/<name>
    app.register_blueprint(registries.bp)  # GET /v1/registries, PUT/DELETE /v1/registries/<host>
    app.register_blueprint(builds.bp)  # POST /v1/builds: machines build for each other
    app.register_blueprint(dashboard.bp)  # GET / page, /v1/dashboard, /v1/history, /v1/warnings, /metrics
    git.mount(app, config)  # /git/<app>.git: git push deploys (vcapp/deploy.py)
    return app
