"""Projection floors: the sweep and status read only the events after them, and never skip one."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from events.store import EventStore
from projections import patients
from projections.projector import PARK_AFTER_ATTEMPTS, Projector
from projections.status import retry, status
from projections.writers import apply_patients
from tests.support.consults import submit_many
from tests.support.event_log import append
from tests.support.fold import actual_tables, expected_tables
from tests.support.payloads import submission


@pytest.fixture
async def pool(database_url):
    async with asyncpg.create_pool(database_url, min_size=2, max_size=10) as pool:
        yield pool


async def floors(db: asyncpg.Connection) -> dict[str, int]:
    return {r["projection"]: r["position"] for r in await db.fetch("SELECT projection, position FROM projection_floors")}


async def test_the_sweep_moves_every_floor_to_the_head_and_then_reads_only_what_follows(settings, tenant, pool, db, keyring):
    await submit_many(settings, tenant.key, [submission(customer_id=f"cus_{i}") for i in range(5)])
    projector = Projector(pool, keyring)
    assert await projector.sweep() == 5 * 3
    head = await db.fetchval("SELECT max(position) FROM events")
    assert await floors(db) == {"patients": head, "consultations": head, "approvals": head}

    # Damage an old stream's checkpoint behind the floor: the sweep does not read that far back...
    old = await db.fetchval("SELECT stream_id FROM events ORDER BY position LIMIT 1")
    await db.execute("DELETE FROM projection_checkpoints WHERE projection = 'approvals' AND stream_id = $1", old)
    await db.execute("DELETE FROM approvals WHERE consultation_id = "
                     "(SELECT (payload->>'consultation_id')::uuid FROM events WHERE stream_id = $1)", old)
    await submit_many(settings, tenant.key, [submission(customer_id="cus_new")])
    assert await projector.sweep() == 1 * 3  # only the new event
    assert (await floors(db))["approvals"] == await db.fetchval("SELECT max(position) FROM events")
    # ... until its floor is dropped, as `projections retry` and a rebuild do.
    await db.execute("DELETE FROM projection_floors WHERE projection = 'approvals'")
    assert await projector.sweep() == 1
    assert await actual_tables(db) == await expected_tables(db, keyring)


async def test_a_floor_never_passes_an_event_whose_transaction_is_still_open(pool, db, keyring):
    held, release = asyncio.Event(), asyncio.Event()

    async def hold_commit(point: str) -> None:
        if point == "append.before_commit":
            held.set()
            await release.wait()

    projector = Projector(pool, keyring, projections={patients.NAME: apply_patients})
    slow = asyncio.create_task(append(EventStore(pool, keyring, fault=hold_commit), "slow", 0))
    try:
        await asyncio.wait_for(held.wait(), 10)  # slow's event has its position, uncommitted
        fast = await append(EventStore(pool, keyring), "fast", 0)
        assert await projector.sweep() == 1  # fast's event: slow's is not visible yet
        assert (await floors(db)).get("patients", 0) < fast  # and the floor stops short of it
    finally:
        release.set()
    low = await slow
    assert low < fast  # the trap: a lower position committed later
    assert await projector.sweep() == 1  # so slow's event is still found
    assert await floors(db) == {"patients": fast}
    assert await projector.sweep() == 0


async def test_status_counts_lag_after_the_floor_and_parked_streams_apart(settings, tenant, pool, db, keyring):
    await submit_many(settings, tenant.key, [submission(customer_id="cus_ok"), submission(customer_id="c" * 120)])
    await db.execute("ALTER TABLE consultations ADD CONSTRAINT short_customer CHECK (length(customer_id) < 100)")
    before = {row.projection: row for row in await status(db)}
    assert {name: row.lag_events for name, row in before.items()} == {
        "approvals": 2, "consultations": 2, "patients": 2}
    projector = Projector(pool, keyring)
    for _ in range(PARK_AFTER_ATTEMPTS):
        await projector.sweep()
    after = {row.projection: row for row in await status(db)}
    head = await db.fetchval("SELECT max(position) FROM events")
    assert {name: (row.lag_events, row.parked) for name, row in after.items()} == {
        "approvals": (0, 0), "consultations": (0, 1), "patients": (0, 0)}
    assert all(row.head_position == head for row in after.values())
    assert after["approvals"].applied_position == head

    # Un-parking forgets the floor, so even if the retry's own catch-up never runs,
    # the next sweep still applies the retried stream.
    await db.execute("ALTER TABLE consultations DROP CONSTRAINT short_customer")
    assert len(await retry(db, None)) == 1
    assert "consultations" not in await floors(db)
    assert await projector.sweep() == 1
    assert await actual_tables(db) == await expected_tables(db, keyring)
