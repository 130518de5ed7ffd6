"""Containerfile templates, one per language, filled with str.format by buildpacks.packs.

Placeholders: {stack} the base image; {command} the web command as a JSON string; the rest
are whole Containerfile lines a detector chooses (install steps). Dependencies are
installed before the source is copied, where the language allows it, so an edit that does
not touch the dependency list reuses the cached install layer.
"""

from __future__ import annotations

# The command always runs through sh so `$PORT` in a Procfile line expands, and with exec so
# the app is PID 1's only child and receives SIGTERM on stop.
CMD = 'CMD ["/bin/sh", "-c", {command}]'

PYTHON = """\
FROM {stack}
WORKDIR /app
ENV VIRTUAL_ENV=/app/.venv PATH=/app/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN python3 -m venv /app/.venv
{install}
{collectstatic}EXPOSE 8080
""" + CMD + "\n"

# {vendored}: COPY lines for local directories requirements.txt points pip at
# (`--find-links wheels`), so an app can bring its wheels and build with no index reachable.
PYTHON_REQUIREMENTS = """\
COPY requirements.txt ./
{vendored}RUN pip install --no-cache-dir -r requirements.txt
COPY . ."""

PYTHON_VENDORED_DIR = "COPY {path} ./{path}\n"

PYTHON_PYPROJECT = """\
COPY . .
RUN pip install --no-cache-dir ."""

PYTHON_PIPFILE = """\
COPY Pipfile Pipfile.lock* ./
RUN pip install --no-cache-dir pipenv && pipenv install --system {pipenv_flags} && pip uninstall -y pipenv
COPY . ."""

PYTHON_PLAIN = "COPY . ."

# A Django project (manage.py at the top, Django among its dependencies) gets its static
# files collected into STATIC_ROOT at build, as Heroku's Python buildpack does: the image
# serves them (WhiteNoise, say) without a step at start. A settings module that cannot be
# imported without runtime secrets fails the build here, naming the error.
PYTHON_COLLECTSTATIC = "RUN python manage.py collectstatic --noinput\n"

NODE = """\
FROM {stack}
WORKDIR /app
ENV NODE_ENV=production
COPY package*.json ./
{install}
COPY . .
{build}
EXPOSE 8080
""" + CMD + "\n"

NODE_INSTALL_LOCKED = "RUN npm ci --omit=dev"
NODE_INSTALL = "RUN npm install --omit=dev"
# A build script usually needs devDependencies: install all, build, then drop them.
NODE_INSTALL_ALL = "RUN npm install --include=dev"
NODE_BUILD = "RUN npm run build && npm prune --omit=dev"

# Two stages: the Go toolchain is hundreds of MB; the app runs on the static stack (busybox)
# as a static binary (CGO_ENABLED=0 in the go stack), with the CA bundle copied over.
GO = """\
FROM {stack} AS build
WORKDIR /src
COPY go.mod go.sum* ./
RUN go mod download
COPY . .
RUN go build -trimpath -o /out/server .

FROM {run_stack}
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/server /app/server
WORKDIR /app
EXPOSE 8080
""" + CMD + "\n"

STATIC = """\
FROM {stack}
COPY . /srv/www
WORKDIR /srv/www
EXPOSE 8080
""" + CMD + "\n"
