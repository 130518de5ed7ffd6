"""The admin API: a Flask app (app.py `create_app`), JSON in and out, every route behind an
admin token unless marked otherwise (auth.py). Routes live in one blueprint per concern
(apps, tokens, releases, volumes, nodes, builds, git, dashboard, ...); errors become
`{"error": message}` in errors.py alone. The package itself imports nothing, so a blueprint
importing `vcapp.api.context` does not import every other blueprint.
"""
