"""Shared fixtures: a real PostgreSQL and Redis started by the suite, a migrated template
database cloned per test (CREATE DATABASE … TEMPLATE), and tenants with API keys.

The helpers behind them live in tests/support/ (databases.py, tenants.py), where any test
module may import them; test modules never import from this file or from each other."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from events.privacy import Keyring
from projections.secretbox import SecretBox
from service.devstack import EmbeddedPostgres, EmbeddedRedis
from service.keyring import checked_keyring, generate_kek
from service.settings import Settings
from tests.support.databases import app_url, cloned_database, create_template
from tests.support.tenants import TenantKeys, make_tenant

TEMPLATE = "intake_template"
_counter = itertools.count()


@pytest.fixture(scope="session")
def state_dir() -> Iterator[Path]:
    """One scratch folder for the session's servers."""
    with tempfile.TemporaryDirectory(prefix="intake-tests-") as path:
        yield Path(path)


@pytest.fixture(scope="session")
def postgres(state_dir: Path) -> Iterator[EmbeddedPostgres]:
    """A real PostgreSQL 18 for the whole session (fsync off: tests kill processes, not the machine)."""
    server = EmbeddedPostgres(state_dir / "postgres", durable=False, settings={"max_connections": "300"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(state_dir: Path) -> Iterator[EmbeddedRedis]:
    """A real Redis for the whole session."""
    server = EmbeddedRedis(state_dir / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def template_database(postgres: EmbeddedPostgres) -> str:
    """A database with every migration applied, cloned by each test."""
    return await create_template(postgres, TEMPLATE)


@pytest.fixture
async def database_url(postgres: EmbeddedPostgres, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    async with cloned_database(postgres, template_database, f"test_{os.getpid()}_{next(_counter)}") as url:
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the test's database, for setup and assertions."""
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


# Tests drive one key far harder than a client would; tests/integration/test_rate_limits.py
# turns the limits on where they are the point.
NO_RATE_LIMITS = {"rate_limit_per_key": "off", "rate_limit_per_business": "off"}


@pytest.fixture(scope="session", autouse=True)
def key_encryption_key() -> Iterator[str]:
    """One key-encryption key for the session, in the environment every process the tests start
    inherits (`intake serve`, `intake worker`, the CLI), as a deployment would configure it."""
    with session_env("INTAKE_KEK", generate_kek()) as kek:
        yield kek


@pytest.fixture(scope="session", autouse=True)
def secrets_key() -> Iterator[str]:
    """The key partner and webhook secrets are sealed with, made for the session like the KEK:
    nothing runs on a default (there is none)."""
    with session_env("SECRETS_KEY", SecretBox.generate()) as key:
        yield key


@contextlib.contextmanager
def session_env(name: str, value: str) -> Iterator[str]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield value
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous


@pytest.fixture
def settings(database_url: str, redis_server: EmbeddedRedis, key_encryption_key: str, secrets_key: str) -> Settings:
    """Settings pointing at the test's database, as the app role (owning nothing, no UPDATE or DELETE
    on the log), with the superuser as the owner; and at the session's Redis."""
    return dataclasses.replace(Settings.from_env({}), database_url=app_url(database_url),
                               owner_database_url=database_url, redis_url=redis_server.url(),
                               log_format="json", db_pool_max=40, kek=key_encryption_key, secrets_key=secrets_key,
                               **NO_RATE_LIMITS)


@pytest.fixture
async def keyring(settings: Settings, db: asyncpg.Connection) -> Keyring:
    """The keyring of the session's KEK, checked against (and registered in) the test's database."""
    return await checked_keyring(settings, db)


@pytest.fixture
async def tenant(db: asyncpg.Connection) -> TenantKeys:
    """Business 'acme' with keys."""
    return await make_tenant(db, "acme")


@pytest.fixture
async def other_tenant(db: asyncpg.Connection) -> TenantKeys:
    """Business 'globex' with keys."""
    return await make_tenant(db, "globex")
