"""Fixtures for the end-to-end tests: servers a test may stop, kill and start again."""

from __future__ import annotations

import asyncpg
import pytest

from service import migrations
from service.devstack import EmbeddedPostgres, EmbeddedRedis, free_port
from tests.support.tenants import make_tenant


@pytest.fixture
async def own_postgres(tmp_path):
    """A PostgreSQL this test may stop and start (the session's is shared)."""
    server = EmbeddedPostgres(tmp_path / "pg", durable=False)
    server.start()
    conn = await asyncpg.connect(server.url())
    try:
        await migrations.migrate(conn, migrations.load_migrations())
        keys = await make_tenant(conn, "acme")
    finally:
        await conn.close()
    try:
        yield server, keys
    finally:
        server.stop()


@pytest.fixture
def own_redis(tmp_path):
    """A Redis this test may kill, wipe and restart empty on the same port (the session's is shared)."""
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
