"""The ASGI entry point for servers: `uvicorn --factory service.http.asgi:app_from_env`."""

from __future__ import annotations

from litestar.types import ASGIApp

from service.http.app import create_app
from service.logs import configure_logging
from service.settings import Settings


def app_from_env() -> ASGIApp:
    """Settings from the environment, logging configured, app built (once per server worker)."""
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
