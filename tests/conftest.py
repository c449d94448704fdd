"""Shared fixtures: a real PostgreSQL and Redis started by the suite, a migrated template
database cloned per test (CREATE DATABASE … TEMPLATE), and tenants with API keys."""

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

from service import admin, migrations
from service.devstack import EmbeddedPostgres, EmbeddedRedis
from service.settings import Settings

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
    conn = await asyncpg.connect(postgres.url())
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        await conn.execute(f"CREATE DATABASE {TEMPLATE}")
    finally:
        await conn.close()
    conn = await asyncpg.connect(postgres.url(TEMPLATE))
    try:
        await migrations.migrate(conn, migrations.load_migrations())
    finally:
        await conn.close()
    return TEMPLATE


@contextlib.asynccontextmanager
async def cloned_database(postgres: EmbeddedPostgres, template: str, name: str) -> AsyncIterator[str]:
    """A database cloned from the migrated template for as long as the block runs; yields its URL."""
    conn = await asyncpg.connect(postgres.url())
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    finally:
        await conn.close()
    try:
        yield postgres.url(name)
    finally:
        conn = await asyncpg.connect(postgres.url())
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()


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


@pytest.fixture
def settings(database_url: str, redis_server: EmbeddedRedis) -> Settings:
    """Settings pointing at the test's database and the session's Redis."""
    return dataclasses.replace(Settings.from_env({}), database_url=database_url, redis_url=redis_server.url(),
                               log_format="json", db_pool_max=40)


@dataclasses.dataclass(frozen=True)
class TenantKeys:
    """A business and API keys for it."""

    slug: str
    key: str  # every business scope
    read_only_key: str


async def make_tenant(conn: asyncpg.Connection, slug: str) -> TenantKeys:
    """Create a business with a full key and a read-only key."""
    await admin.create_business(conn, slug, slug.title())
    scopes = ["submissions:write", "consultations:read", "consultations:decide", "audit:read"]
    full = await admin.create_key(conn, business=slug, scopes=scopes, admin=False)
    read = await admin.create_key(conn, business=slug, scopes=["consultations:read"], admin=False)
    return TenantKeys(slug, full.key, read.key)


@pytest.fixture
async def tenant(db: asyncpg.Connection) -> TenantKeys:
    """Business 'acme' with keys."""
    return await make_tenant(db, "acme")


@pytest.fixture
async def other_tenant(db: asyncpg.Connection) -> TenantKeys:
    """Business 'globex' with keys."""
    return await make_tenant(db, "globex")
