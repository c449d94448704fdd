"""Running the API under uvicorn (uvloop + httptools), with a bounded graceful shutdown."""

from __future__ import annotations

import uvicorn

from service.faults import Faults
from service.logs import configure_logging
from service.settings import Settings

APP_FACTORY = "service.http.asgi:app_from_env"


def uvicorn_options(settings: Settings) -> dict[str, object]:
    """The server options shared by `intake serve` and `intake dev`."""
    return {
        "loop": "uvloop", "http": "httptools", "lifespan": "on", "access_log": False, "log_config": None,
        "timeout_graceful_shutdown": settings.shutdown_grace_ms / 1000,
        "limit_concurrency": 2048,  # beyond this, 503 from the server instead of unbounded queueing
        "backlog": 2048,
    }


def serve(settings: Settings, *, host: str, port: int, workers: int) -> int:
    """Run the API until SIGINT/SIGTERM; in-flight requests get SHUTDOWN_GRACE_MS to finish."""
    configure_logging(settings.log_level, settings.log_format)
    settings.require_database_url()
    Faults(settings.faults, environment=settings.environment)  # refuse bad or production faults before forking
    uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, workers=workers, **uvicorn_options(settings))
    return 0
