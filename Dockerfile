# syntax=docker/dockerfile:1
# The intake image: one image for every role (api, worker, migrate); compose.yaml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# A non-root user with fixed numeric ids (so `runAsNonRoot`-style checks can verify it).
# The code and the virtualenv stay owned by root: the service only reads them.
RUN groupadd --system --gid 10001 intake \
 && useradd --system --uid 10001 --gid intake --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin intake \
 && python -m venv /opt/venv

WORKDIR /app

# Runtime dependencies in their own layer, read from pyproject.toml, so editing the code does not
# reinstall them. (All of them ship manylinux wheels for CPython 3.11 on x86_64, checked with
# --only-binary=:all:, so the slim image needs no compiler.)
COPY pyproject.toml ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# Why an editable install of a copy at /app, not `pip install .`:
# the code reads its SQL from the top-level sql/ folder next to the packages
# (events/sqlfiles.py: Path(__file__).resolve().parent.parent / "sql"). sql/ is not a Python package,
# so a regular install would put service/, events/ and projections/ in site-packages WITHOUT sql/,
# and the first migration or query would fail with FileNotFoundError. Editable mode keeps the modules
# at /app/<package>/, so parent.parent is /app and /app/sql is found; the `intake` console script is
# still installed on PATH.
COPY . .
RUN pip install --no-deps -e . \
 && python -m compileall -q service events projections \
 && python -c 'from events.sqlfiles import SQL_DIR; assert (SQL_DIR / "migrations").is_dir(), SQL_DIR' \
 && intake --help > /dev/null

USER 10001:10001

EXPOSE 8000

# Liveness only (the process answers HTTP); compose.yaml overrides it with /readyz for the api and
# disables it for roles that serve no HTTP (worker, migrate). slim has no curl, so Python does the GET;
# urlopen raises on any non-2xx, which exits 1.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=2)"]

# Exec form: intake receives SIGTERM directly and drains for SHUTDOWN_GRACE_MS.
CMD ["intake", "serve", "--host", "0.0.0.0", "--port", "8000"]
