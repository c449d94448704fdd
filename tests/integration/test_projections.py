"""Projector, relay and sweep against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import dataclasses

import asyncpg
import httpx
import pytest
from arq.connections import RedisSettings, create_pool

from projections.projector import PARK_AFTER_ATTEMPTS, Projector
from projections.relay import Relay
from service.devstack import EmbeddedRedis
from tests.support.fold import actual_tables, expected_tables
from tests.support.payloads import headers, submission
from tests.support.servers import running_api

URL = "/v1/businesses/acme/consult-submissions"


@pytest.fixture
async def pool(database_url):
    async with asyncpg.create_pool(database_url, min_size=1, max_size=10) as pool:
        yield pool


async def submit_many(settings, key: str, bodies: list[dict]) -> list[httpx.Response]:
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        return [await client.post(URL, json=b, headers=headers(key)) for b in bodies]


async def test_sweep_materializes_exactly_the_fold_of_the_log_and_a_second_sweep_changes_nothing(
        settings, tenant, pool, db):
    bodies = [submission(customer_id=f"cus_{i % 3}", product_id=f"prod_{i % 2}") for i in range(8)]
    await submit_many(settings, tenant.key, bodies)
    projector = Projector(pool)
    assert await projector.sweep() > 0
    assert await actual_tables(db) == await expected_tables(db)
    assert len((await actual_tables(db))["consultations"]) == 6  # 3 customers × 2 products, the rest deduplicated
    assert await projector.sweep() == 0


async def test_a_duplicate_delivery_is_a_no_op(settings, tenant, pool, db):
    await submit_many(settings, tenant.key, [submission()])
    projector = Projector(pool)
    stream = await db.fetchval("SELECT stream_id FROM events")
    results = await asyncio.gather(*(projector.catch_up(stream) for _ in range(5)))
    assert sorted(results) == [0, 0, 0, 0, 3]  # one event, three projections, applied once
    assert await actual_tables(db) == await expected_tables(db)


async def test_patient_details_follow_the_highest_position_whatever_the_processing_order(
        settings, tenant, pool, db):
    older = submission(product_id="prod_1", patient={**submission()["patient"], "first_name": "Old"})
    newer = submission(product_id="prod_2", patient={**submission()["patient"], "first_name": "New"})
    await submit_many(settings, tenant.key, [older, newer])
    streams = [r["stream_id"] for r in await db.fetch("SELECT stream_id FROM events ORDER BY position")]
    projector = Projector(pool)
    for stream in reversed(streams):  # the newer submission's stream first
        await projector.catch_up(stream)
    assert await db.fetchval("SELECT first_name FROM patients") == "New"
    assert await actual_tables(db) == await expected_tables(db)


async def test_a_poison_event_parks_only_its_stream_and_retry_after_a_fix_applies_it(settings, tenant, pool, db):
    long_id = "c" * 120
    await submit_many(settings, tenant.key, [submission(customer_id="cus_ok"), submission(customer_id=long_id)])
    # A read-model bug: this projection's table cannot hold the second customer's id.
    await db.execute("ALTER TABLE consultations ADD CONSTRAINT short_customer CHECK (length(customer_id) < 100)")
    projector = Projector(pool)
    for _ in range(PARK_AFTER_ATTEMPTS):
        await projector.sweep()
    parked = await db.fetch("SELECT projection, error FROM projection_failures WHERE parked")
    assert [(r["projection"], r["error"]) for r in parked] == [("consultations", "CheckViolationError (short_customer)")]
    assert await db.fetchval("SELECT count(*) FROM consultations") == 1  # the healthy stream projected
    assert await db.fetchval("SELECT count(*) FROM approvals") == 2  # other projections of the stream too
    assert long_id not in str(await db.fetch("SELECT * FROM projection_failures"))
    assert await projector.sweep() == 0  # parked: no longer retried by the sweep

    await db.execute("ALTER TABLE consultations DROP CONSTRAINT short_customer")  # the fix
    from projections.operations import retry
    streams = await retry(db, None)
    for stream in streams:
        await projector.catch_up(stream)
    assert await db.fetchval("SELECT count(*) FROM consultations") == 2
    assert await actual_tables(db) == await expected_tables(db)


async def test_relay_moves_outbox_rows_to_redis_and_keeps_them_while_redis_is_down(
        settings, tenant, pool, db, database_url, tmp_path):
    own_redis = EmbeddedRedis(tmp_path / "redis")
    own_redis.start()
    try:
        redis = await create_pool(dataclasses.replace(RedisSettings.from_dsn(own_redis.url()),
                                                      conn_timeout=1, conn_retries=0))
        relay = Relay(pool, redis, database_url)
        await submit_many(settings, tenant.key, [submission(customer_id=f"cus_{i}") for i in range(3)])
        own_redis.kill()
        assert await relay.relay_once() == 0
        assert await db.fetchval("SELECT count(*) FROM outbox WHERE attempts = 1") == 3  # kept, deferred

        own_redis.start()
        await db.execute("UPDATE outbox SET available_at = now()")  # skip the backoff wait
        assert await relay.relay_once() == 3
        assert await db.fetchval("SELECT count(*) FROM outbox") == 0
        assert await redis.zcard("arq:queue") == 3
        assert await relay.relay_once() == 0
        await redis.aclose()
    finally:
        own_redis.stop()
