"""Running the API under uvicorn (uvloop + httptools), with a bounded graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Iterator

import structlog
import uvicorn

from service import keyring
from service.connections import ConnectionLimits, GuardedHttpToolsProtocol, raise_fd_limit
from service.faults import Faults
from service.logs import configure_logging
from service.metrics import MULTIPROCESS_DIR_ENV
from service.ratelimit import parse_rules
from service.settings import Settings, usable_cpus
from service.webhooks import secret_box

APP_FACTORY = "service.http.asgi:app_from_env"


def uvicorn_options(settings: Settings) -> dict[str, object]:
    """The server options shared by `intake serve` and `intake dev`: uvloop and httptools, with the
    connection limits of service/connections.py (call raise_fd_limit() first for the widest cap)."""
    protocol = functools.partial(GuardedHttpToolsProtocol, limits=ConnectionLimits.from_settings(settings))
    return {
        "loop": "uvloop", "http": protocol, "lifespan": "on", "access_log": False, "log_config": None,
        "timeout_graceful_shutdown": settings.shutdown_grace_ms / 1000,
        "timeout_keep_alive": settings.http_keepalive_timeout_s,
        # uvicorn's own cap counts idle sockets too; the protocol's HTTP_MAX_IN_FLIGHT counts only requests.
        "limit_concurrency": None,
        # Nothing reads the client's address (limits key on the API key, logs never hold it), so
        # uvicorn's X-Forwarded-For rewrite would be a middleware pass per request with no observer.
        "proxy_headers": False,
        "backlog": 2048,
    }


def serve(settings: Settings, *, host: str, port: int, workers: int | None = None) -> int:
    """Run the API until SIGINT/SIGTERM; in-flight requests get SHUTDOWN_GRACE_MS to finish.
    `workers` None: INTAKE_WORKERS, else one per usable CPU (Settings.workers)."""
    configure_logging(settings.log_level, settings.log_format)
    settings.require_database_url()
    workers, source = settings.workers(workers)
    structlog.get_logger("intake.serve").info("serve.starting", host=host, port=port, workers=workers,
                                              workers_from=source, usable_cpus=usable_cpus())
    Faults(settings.faults, environment=settings.environment)  # refuse bad or production faults before forking
    parse_rules(settings.rate_limit_per_key), parse_rules(settings.rate_limit_per_business)  # and bad limits
    secret_box(settings)  # and a missing or malformed SECRETS_KEY
    asyncio.run(keyring.preflight(settings))  # and a missing or wrong key-encryption key
    raise_fd_limit()  # before forking: the workers inherit it
    with _shared_metrics(workers):
        uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, workers=workers, **uvicorn_options(settings))
    return 0


@contextlib.contextmanager
def _shared_metrics(workers: int) -> Iterator[None]:
    """With several worker processes, a fresh directory where they all keep their metrics
    (prometheus_client's multiprocess mode), so a scrape of any of them counts all of them."""
    if workers <= 1 or os.environ.get(MULTIPROCESS_DIR_ENV):
        yield
        return
    directory = tempfile.mkdtemp(prefix="intake-metrics-")
    os.environ[MULTIPROCESS_DIR_ENV] = directory  # inherited by the workers uvicorn spawns
    try:
        yield
    finally:
        del os.environ[MULTIPROCESS_DIR_ENV]
        shutil.rmtree(directory, ignore_errors=True)
