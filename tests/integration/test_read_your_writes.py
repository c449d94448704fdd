"""Read-your-writes: a read with `min_position` waits (bounded) until the projections have applied
that log position, then answers with the fresh row, or 503 with Retry-After if they stay behind."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from events.privacy import Keyring
from projections.projector import Projector
from tests.support.consults import submit
from tests.support.reads import api, assert_problem, ok, read

SERVER_WAIT_S = 2.0  # how long the server waits for min_position (projections/freshness.py FRESHNESS_WAIT_S)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=10) as pool:
        yield pool


async def sweep_once_the_read_is_waiting(pool: asyncpg.Pool, keyring: Keyring, request: asyncio.Task,
                                         at_least_s: float = 0.1) -> None:
    """Project the log once the read has been in flight for `at_least_s`, and prove it was still waiting."""
    started = time.monotonic()
    while time.monotonic() - started < at_least_s and not request.done():
        await asyncio.sleep(0.01)
    if request.done():
        await request  # an early error answer fails here, with its body
        pytest.fail("the read answered before the projector ran")
    await Projector(pool, keyring).sweep()


@pytest.mark.parametrize("path", ["/consultations/{consultation_id}", "/consultations", "/patients", "/approvals"])
async def test_min_position_waits_for_the_projector_and_answers_with_the_fresh_row(settings, tenant, pool, path,
                                                                                   keyring):
    async with api(settings) as client:
        for round_ in range(2):  # the second time, the server's floor is past the first write
            sent = await submit(client, tenant, customer_id=f"cus_{round_}")
            request = asyncio.create_task(
                ok(read(client, tenant, path.format(**sent), min_position=sent["position"])))
            await sweep_once_the_read_is_waiting(pool, keyring, request)
            body = await request
            items = body["items"] if "items" in body else [body]
            assert f"cus_{round_}" in {item["customer_id"] for item in items}


async def test_min_position_answers_503_with_retry_after_while_the_projection_stays_behind(settings, tenant):
    async with api(settings) as client:
        sent = await submit(client, tenant)
        started = time.monotonic()
        response = await read(client, tenant, f"/consultations/{sent['consultation_id']}",
                              min_position=sent["position"])
        waited = time.monotonic() - started
    assert_problem(response, 503, "projection-lagging")
    assert response.headers["retry-after"] == "1"
    assert SERVER_WAIT_S - 0.1 <= waited < SERVER_WAIT_S + 1.5


async def test_min_position_past_the_logs_head_is_400_at_once_not_a_wait(settings, tenant):
    """No write has returned such a position: waiting 2 s for it would only end in a 503."""
    async with api(settings) as client:
        sent = await submit(client, tenant)
        started = time.monotonic()
        response = await read(client, tenant, "/consultations", min_position=sent["position"] + 1)
        waited = time.monotonic() - started
    assert_problem(response, 400, "unknown-position")
    assert waited < SERVER_WAIT_S / 2


async def test_min_position_already_applied_answers_at_once_whatever_other_businesses_lag(
        settings, tenant, other_tenant, pool, keyring):
    async with api(settings) as client:
        sent = await submit(client, tenant)
        await Projector(pool, keyring).sweep()
        theirs = await submit(client, other_tenant)  # never projected
        for position in (sent["position"], theirs["position"]):
            started = time.monotonic()
            body = await ok(read(client, tenant, "/consultations", min_position=position))
            assert time.monotonic() - started < SERVER_WAIT_S / 2
            assert [c["consultation_id"] for c in body["items"]] == [sent["consultation_id"]]


async def test_min_position_waits_again_when_checkpoints_are_reset_under_the_servers_floor(
        settings, tenant, pool, db, keyring):
    async with api(settings) as client:
        sent = await submit(client, tenant)
        await Projector(pool, keyring).sweep()
        await ok(read(client, tenant, "/consultations", min_position=sent["position"]))  # the floor moves past it
        # What a rebuild does: the read model and its checkpoints start again from nothing.
        await db.execute("DELETE FROM projection_checkpoints WHERE projection = 'consultations'")
        await db.execute("DELETE FROM consultations")
        request = asyncio.create_task(ok(read(client, tenant, "/consultations", min_position=sent["position"])))
        await sweep_once_the_read_is_waiting(pool, keyring, request)
        body = await request
    assert [c["consultation_id"] for c in body["items"]] == [sent["consultation_id"]]
