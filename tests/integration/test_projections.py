"""Projector, relay and sweep against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import random

import asyncpg
import httpx
import pytest
from arq.connections import RedisSettings, create_pool

from events.store import EventStore
from projections.projector import PARK_AFTER_ATTEMPTS, Projector
from projections.relay import Relay
from service.devstack import EmbeddedRedis
from tests.support.consults import decide, submit, submit_many
from tests.support.event_log import append
from tests.support.fold import actual_tables, expected_tables
from tests.support.payloads import decision, submission
from tests.support.servers import running_api


@pytest.fixture
async def pool(database_url):
    async with asyncpg.create_pool(database_url, min_size=1, max_size=10) as pool:
        yield pool


async def test_sweep_materializes_exactly_the_fold_of_the_log_and_a_second_sweep_changes_nothing(
        settings, tenant, pool, db, keyring):
    bodies = [submission(customer_id=f"cus_{i % 3}", product_id=f"prod_{i % 2}") for i in range(8)]
    await submit_many(settings, tenant.key, bodies)
    projector = Projector(pool, keyring)
    assert await projector.sweep() > 0
    assert await actual_tables(db) == await expected_tables(db, keyring)
    assert len((await actual_tables(db))["consultations"]) == 6  # 3 customers × 2 products, the rest deduplicated
    assert await projector.sweep() == 0


async def test_a_duplicate_delivery_is_a_no_op(settings, tenant, pool, db, keyring):
    await submit_many(settings, tenant.key, [submission()])
    projector = Projector(pool, keyring)
    stream = await db.fetchval("SELECT stream_id FROM events")
    results = await asyncio.gather(*(projector.catch_up(stream) for _ in range(5)))
    assert sorted(results) == [0, 0, 0, 0, 3]  # one event, three projections, applied once
    assert await actual_tables(db) == await expected_tables(db, keyring)


async def test_patient_details_follow_the_highest_position_whatever_the_processing_order(
        settings, tenant, pool, db, keyring):
    older = submission(product_id="prod_1", patient={**submission()["patient"], "first_name": "Old"})
    newer = submission(product_id="prod_2", patient={**submission()["patient"], "first_name": "New"})
    await submit_many(settings, tenant.key, [older, newer])
    streams = [r["stream_id"] for r in await db.fetch("SELECT stream_id FROM events ORDER BY position")]
    projector = Projector(pool, keyring)
    for stream in reversed(streams):  # the newer submission's stream first
        await projector.catch_up(stream)
    assert await db.fetchval("SELECT first_name FROM patients") == "New"
    assert await actual_tables(db) == await expected_tables(db, keyring)


async def test_a_poison_event_parks_only_its_stream_and_retry_after_a_fix_applies_it(settings, tenant, pool, db, keyring):
    long_id = "c" * 120
    await submit_many(settings, tenant.key, [submission(customer_id="cus_ok"), submission(customer_id=long_id)])
    # A read-model bug: this projection's table cannot hold the second customer's id.
    await db.execute("ALTER TABLE consultations ADD CONSTRAINT short_customer CHECK (length(customer_id) < 100)")
    projector = Projector(pool, keyring)
    for _ in range(PARK_AFTER_ATTEMPTS):
        await projector.sweep()
    parked = await db.fetch("SELECT projection, error FROM projection_failures WHERE parked")
    assert [(r["projection"], r["error"]) for r in parked] == [("consultations", "CheckViolationError (short_customer)")]
    assert await db.fetchval("SELECT count(*) FROM consultations") == 1  # the healthy stream projected
    assert await db.fetchval("SELECT count(*) FROM approvals") == 2  # other projections of the stream too
    assert long_id not in str(await db.fetch("SELECT * FROM projection_failures"))
    assert await projector.sweep() == 0  # parked: no longer retried by the sweep

    await db.execute("ALTER TABLE consultations DROP CONSTRAINT short_customer")  # the fix
    from projections.status import retry
    streams = await retry(db, None)
    await projector.catch_up(*streams)
    assert await db.fetchval("SELECT count(*) FROM consultations") == 2
    assert await actual_tables(db) == await expected_tables(db, keyring)


async def test_relay_moves_outbox_rows_to_redis_and_keeps_them_while_redis_is_down(
        settings, tenant, pool, db, tmp_path):
    own_redis = EmbeddedRedis(tmp_path / "redis")
    own_redis.start()
    try:
        redis = await create_pool(dataclasses.replace(RedisSettings.from_dsn(own_redis.url()),
                                                      conn_timeout=1, conn_retries=0))
        relay = Relay(pool, redis)
        await submit_many(settings, tenant.key, [submission(customer_id=f"cus_{i}") for i in range(3)])
        own_redis.kill()
        assert await relay.relay_once() == 0
        assert await db.fetchval("SELECT count(*) FROM outbox WHERE attempts = 1") == 3  # kept, deferred

        own_redis.start()
        await db.execute("UPDATE outbox SET available_at = now()")  # skip the backoff wait
        assert await relay.relay_once() == 3
        assert await db.fetchval("SELECT count(*) FROM outbox") == 0
        (job,) = await redis.queued_jobs()  # one job for the batch, naming all three streams
        assert sorted(job.args) == sorted(r["stream_id"] for r in await db.fetch("SELECT stream_id FROM events"))
        assert await relay.relay_once() == 0
        await redis.aclose()
    finally:
        own_redis.stop()


async def test_concurrent_overlapping_batches_apply_every_event_once_without_deadlocking(settings, tenant, pool, db, keyring):
    # 10 customers × 4 products: patients are shared between streams, so batches overlap on
    # patient rows as well as on streams; each batch locks what it touches in one fixed order.
    bodies = [submission(customer_id=f"cus_{i % 10}", product_id=f"prod_{i // 10}") for i in range(40)]
    await submit_many(settings, tenant.key, bodies)
    streams = [r["stream_id"] for r in await db.fetch("SELECT stream_id FROM events ORDER BY position")]
    projector = Projector(pool, keyring)
    rng = random.Random(7)
    batches = [rng.sample(streams, 25) for _ in range(8)] + [list(reversed(streams))]
    applied = await asyncio.gather(*(projector.catch_up(*batch) for batch in batches))
    assert sum(applied) == 3 * len(streams)  # every event, every projection, exactly once
    assert await db.fetchval("SELECT count(*) FROM projection_failures") == 0
    assert await actual_tables(db) == await expected_tables(db, keyring)


async def test_a_batch_deciding_a_pending_row_and_resubmitting_its_slot_writes_in_log_order(
        settings, tenant, pool, db, keyring):
    # A pending approval already projected; then one batch holds its decision and the slot's next
    # submission. Written in any order but the log's, the new pending row meets the old one still
    # pending (approvals_one_pending_per_slot). Eight slots, so that an order that merely happens
    # to work (say, by consultation id) fails the test.
    slots = 8
    projector = Projector(pool, keyring)
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        firsts = [await submit(client, tenant, customer_id=f"cus_{n}") for n in range(slots)]
        streams = {r["stream_id"] for r in await db.fetch("SELECT stream_id FROM events")}
        assert await projector.catch_up(*streams) == 3 * slots
        for n, first in enumerate(firsts):
            decided = await decide(client, tenant.slug, first["consultation_id"], decision(), tenant.key)
            assert decided.status_code == 200, decided.text
            await submit(client, tenant, customer_id=f"cus_{n}")
    assert await projector.catch_up(*streams) == 3 * 2 * slots
    assert await db.fetchval("SELECT count(*) FROM projection_failures") == 0
    assert await db.fetchval("SELECT count(*) FROM approvals WHERE status = 'pending'") == slots
    assert await actual_tables(db) == await expected_tables(db, keyring)


async def test_a_failure_is_recorded_at_the_event_that_fails_not_the_first_pending_one(settings, tenant, pool, db, keyring):
    # One slot: A submitted and decided (fine), then B submitted and decided with a reason
    # the consultations table refuses. The event that fails is the fourth.
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        a = await submit(client, tenant)
        assert (await decide(client, tenant.slug, a["consultation_id"], decision(), tenant.key)).status_code == 200
        b = await submit(client, tenant)
        bad = decision(reason="bad reason")
        assert (await decide(client, tenant.slug, b["consultation_id"], bad, tenant.key)).status_code == 200
    await db.execute("ALTER TABLE consultations ADD CONSTRAINT no_bad CHECK (reason IS DISTINCT FROM 'bad reason')")
    failing = await db.fetchrow("SELECT stream_id, stream_version, position FROM events ORDER BY position DESC LIMIT 1")
    await Projector(pool, keyring).catch_up(failing["stream_id"])
    recorded = await db.fetchrow("SELECT version, position FROM projection_failures WHERE projection = 'consultations'")
    # projection_failures.version is documented as "the event that fails".
    assert (recorded["version"], recorded["position"]) == (failing["stream_version"], failing["position"])


class _LateRecorder(Projector):
    """A projector whose failure record is written a moment late (a slow pool acquire, a GC
    pause): `before_record` runs between the failed transaction's rollback and the record."""

    before_record = None

    async def _record_failure(self, name, stream_id, failed):
        if self.before_record is not None:
            await self.before_record()
        await super()._record_failure(name, stream_id, failed)


async def test_a_failure_recorded_after_another_worker_applied_the_pair_does_not_linger(pool, db, keyring):
    # A transient failure (e.g. a unique violation from a concurrent insert on a non-arbiter
    # index): worker A fails, worker B then applies the pair, and only then A records.
    failing = {"now": True}

    async def flaky(conn, events):
        if failing["now"]:
            raise ValueError("transient")

    stream = "s-review"
    await append(EventStore(pool, keyring), stream, 0)
    a = _LateRecorder(pool, keyring, projections={"flaky": flaky})
    b = Projector(pool, keyring, projections={"flaky": flaky})

    async def other_worker_applies_it():
        failing["now"] = False
        assert await b.catch_up(stream) == 1

    a.before_record = other_worker_applies_it
    await a.catch_up(stream)
    assert await db.fetchval("SELECT version FROM projection_checkpoints WHERE stream_id = $1", stream) == 1
    # The pair is caught up; a failure record against it is stale, and counts toward parking
    # the next, unrelated incident (or parks a healthy pair outright when it was the last try).
    assert await db.fetch("SELECT * FROM projection_failures") == []
