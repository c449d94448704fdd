"""The API's pool opens its minimum connections in the background, and keeps them.

A pool made with min_size 0 (so `serve` starts while the database is down) would otherwise open
connections only when requests already queue, each request handed a new one waiting for its start-up
(docs/PERFORMANCE.md, session 6)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from service.db import warm


async def _api_connections(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'warm-test'")


async def test_a_warmed_pool_holds_its_minimum_connections_idle(database_url, db):
    pool = await asyncpg.create_pool(database_url, min_size=0, max_size=8, max_inactive_connection_lifetime=0,
                                     server_settings={"application_name": "warm-test"})
    try:
        assert await _api_connections(db) == 0
        await warm(pool, 5)
        assert await _api_connections(db) == 5  # opened, released, and still open
    finally:
        await pool.close()


async def test_warming_retries_until_the_database_is_there(database_url, db):
    name = f"warm_late_{uuid.uuid4().hex}"
    pool = await asyncpg.create_pool(database_url.rsplit("/", 1)[0] + "/" + name, min_size=0, max_size=2,
                                     max_inactive_connection_lifetime=0)
    warming = asyncio.create_task(warm(pool, 2))
    try:
        done, _ = await asyncio.wait({warming}, timeout=0.5)
        assert not done  # the database does not exist yet: retrying, not failed
        await db.execute(f"CREATE DATABASE {name}")
        await asyncio.wait_for(warming, timeout=10)  # and done once it is there
        assert await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name) == 2
    finally:
        warming.cancel()
        await pool.close()
        await db.execute(f"DROP DATABASE IF EXISTS {name}")
