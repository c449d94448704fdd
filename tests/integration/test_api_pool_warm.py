"""The API's pool opens its minimum connections in the background, and keeps them.

A pool made with min_size 0 (so `serve` starts while the database is down) would otherwise open
connections only when requests already queue, each request handed a new one waiting for its start-up
(docs/PERFORMANCE.md, session 6)."""

from __future__ import annotations

import asyncio

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
        await asyncio.sleep(0.2)
        assert await _api_connections(db) == 5  # opened, released, and still open
    finally:
        await pool.close()


async def test_warming_waits_for_a_database_that_is_not_there_yet():
    pool = await asyncpg.create_pool("postgresql://nobody@127.0.0.1:1/none", min_size=0, max_size=2, timeout=0.2)
    warming = asyncio.create_task(warm(pool, 2))
    await asyncio.sleep(1.5)
    assert not warming.done()  # retrying, not failed
    warming.cancel()
    await pool.close()
