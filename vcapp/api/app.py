"""The admin API's Flask app: `create_app(config)` registers the error handlers, the body
limit, authentication and every blueprint; vcapp/api/serve.py serves it on every machine,
in the node daemon."""

from __future__ import annotations

from flask import Flask

from vcapp.api import apps as apps_routes
from vcapp.api import (apptokens, auth, backups, body, builds, console, dashboard, errors, events, git, health, instance_exec,
                       logs, nodes, openapi, registries, releases, settings, tokens, volumes)
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
    app.register_blueprint(logs.bp)  # GET /v1/apps/<app>/logs
    app.register_blueprint(apptokens.bp)
    app.register_blueprint(releases.bp)
    app.register_blueprint(instance_exec.bp)  # POST /v1/apps/<app>/exec: `vcapp exec`
    app.register_blueprint(console.bp)  # POST /v1/apps/<app>/console: `vcapp run APP` on a terminal
    app.register_blueprint(volumes.bp)
    app.register_blueprint(backups.bp)  # POST /v1/backups
    app.register_blueprint(settings.bp)  # GET /v1/settings, PUT /v1/settings/<name>
    app.register_blueprint(registries.bp)  # GET /v1/registries, PUT/DELETE /v1/registries/<host>
    app.register_blueprint(builds.bp)  # POST /v1/builds: machines build for each other
    app.register_blueprint(dashboard.bp)  # GET / page, /v1/dashboard, /v1/history, /v1/warnings, /metrics
    git.mount(app, config)  # /git/<app>.git: git push deploys (vcapp/deploy/pipeline.py)
    return app
