"""Settings as a deployment configures them, for tests that build their own."""

from __future__ import annotations

import os

from service.settings import Settings

# What tests/conftest.py puts in the environment for the session; nothing else of it leaks in.
SESSION_KEYS = ("INTAKE_KEK", "SECRETS_KEY")


def deployment_settings() -> Settings:
    """Settings with the session's keys and every other setting at its default."""
    return Settings.from_env({name: os.environ[name] for name in SESSION_KEYS})
