"""The relay's backoff while Redis is down cannot overflow, however long the outage has lasted:
an outbox row deferred a thousand times (about twenty minutes of outage), or as often as its
counter can count, is deferred by at most the cap, without an error."""

from __future__ import annotations

import dataclasses

import asyncpg
import pytest
from arq.connections import RedisSettings, create_pool

from events.sqlfiles import queries
from projections.relay import Relay
from service.devstack import EmbeddedRedis
from tests.support.consults import submit_many
from tests.support.payloads import submission

INT_MAX = 2**31 - 1  # outbox.attempts is an integer
CAP = "30 seconds"  # the longest deferral (docs/ARCHITECTURE.md, Projections: the relay)
OUTAGE_LENGTHS = [pytest.param(47, id="first-overflow"), pytest.param(1000, id="1000"),
                  pytest.param(INT_MAX, id="int-max")]


@pytest.fixture
async def pool(database_url):
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as pool:
        yield pool


async def one_outbox_row(settings, tenant, db, attempts: int) -> int:
    """Submit one consult and pretend its outbox row has been deferred `attempts` times."""
    await submit_many(settings, tenant.key, [submission()])
    return await db.fetchval("UPDATE outbox SET attempts = $1 RETURNING position", attempts)


async def deferred_within_the_cap(db: asyncpg.Connection) -> bool:
    return await db.fetchval(f"SELECT bool_and(available_at > now() AND available_at <= now() + interval '{CAP}')"
                             " FROM outbox")


@pytest.mark.parametrize("attempts", OUTAGE_LENGTHS)
async def test_deferring_a_row_after_a_long_outage_waits_at_most_the_cap(settings, tenant, db, attempts):
    position = await one_outbox_row(settings, tenant, db, attempts)
    await db.execute(queries("projections")["defer_outbox"], [position])
    assert await deferred_within_the_cap(db)
    assert await db.fetchval("SELECT attempts FROM outbox") == min(attempts + 1, INT_MAX)


@pytest.mark.parametrize("attempts", OUTAGE_LENGTHS)
async def test_the_relay_keeps_a_long_deferred_row_while_redis_is_down(settings, tenant, pool, db, tmp_path,
                                                                      attempts):
    own_redis = EmbeddedRedis(tmp_path / "redis")
    own_redis.start()
    try:
        redis = await create_pool(dataclasses.replace(RedisSettings.from_dsn(own_redis.url()),
                                                      conn_timeout=1, conn_retries=0))
        await one_outbox_row(settings, tenant, db, attempts)
        own_redis.kill()
        assert await Relay(pool, redis).relay_once() == 0  # no error: the row is kept for later
        assert await deferred_within_the_cap(db)
        await redis.aclose()
    finally:
        own_redis.stop()
