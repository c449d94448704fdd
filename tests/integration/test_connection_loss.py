"""The database connection dies at the worst moments: the request gets 503 + Retry-After, never a 500.

Deterministic companions to tests/e2e/test_database_crash_under_load.py: the backend serving a
transaction is terminated from another session while the transaction is held open at
`append.before_commit`, so asyncpg finds the connection closed when it leaves the transaction
(`Transaction.__aexit__` raises InterfaceError, not a PostgreSQL error).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import asyncpg
import httpx
import pytest

from events.errors import StoreUnavailable, translating_driver_errors
from service.db import create_pool
from tests.support.payloads import headers, submission
from tests.support.servers import running_api

SUBMIT = "/v1/businesses/acme/consult-submissions"
HOLD_MS = 2000  # how long the fault holds the transaction open: ample time to terminate its backend
APPLICATION = "intake-api"


async def terminate_backend_in_transaction(db: asyncpg.Connection, application: str) -> None:
    """Poll until a backend of `application` sits idle in a transaction, then terminate it."""
    deadline = time.monotonic() + HOLD_MS / 1000
    while time.monotonic() < deadline:
        if await db.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 "
                "AND datname = current_database() AND state = 'idle in transaction'", application):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no transaction was held open to terminate")


async def test_connection_lost_before_commit_answers_503_and_the_retry_appends_once(settings, tenant, db):
    held = dataclasses.replace(settings, faults=f"append.before_commit=delay:{HOLD_MS}")
    body, key = submission(customer_id="cus_lost"), headers(tenant.key)
    async with running_api(held) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        sending = asyncio.create_task(client.post(SUBMIT, json=body, headers=key))
        await terminate_backend_in_transaction(db, APPLICATION)
        lost = await sending
    assert lost.status_code == 503, lost.text
    assert lost.headers["retry-after"] == "1"
    assert lost.headers["content-type"] == "application/problem+json"
    assert lost.json()["type"] == "https://intake.dev/problems/database-unavailable"
    assert await db.fetchval("SELECT count(*) FROM events") == 0  # PostgreSQL rolled it back

    async with running_api(settings) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        retried = await client.post(SUBMIT, json=body, headers=key)
    assert retried.status_code == 202, retried.text
    assert "idempotent-replayed" not in retried.headers  # nothing had committed: this is the append
    assert await db.fetchval("SELECT count(*) FROM events WHERE idempotency_key = $1", key["Idempotency-Key"]) == 1


async def test_leaving_a_transaction_on_a_lost_connection_is_store_unavailable(settings, db):
    pool = await create_pool(settings, application_name="intake-lost", min_size=0)
    try:
        with pytest.raises(StoreUnavailable) as raised:
            with translating_driver_errors():
                async with pool.acquire() as conn, conn.transaction():
                    closed = asyncio.Event()
                    conn.add_termination_listener(lambda _: closed.set())
                    await conn.execute("SELECT 1")
                    await terminate_backend_in_transaction(db, "intake-lost")
                    # asyncpg reads the EOF by itself; a deadline in case it never does.
                    await asyncio.wait_for(closed.wait(), 5)
        # The transaction's exit, not a query, met the dead connection.
        assert type(raised.value.__cause__) is asyncpg.InterfaceError
        with translating_driver_errors():  # the pool replaces the dead connection by itself
            async with pool.acquire() as conn:
                assert await conn.fetchval("SELECT 1") == 1
    finally:
        await pool.close()


async def test_an_interface_error_from_a_programming_bug_is_not_an_outage(settings):
    pool = await create_pool(settings, application_name="intake-bug", min_size=0)
    try:
        with pytest.raises(asyncpg.InterfaceError):  # a connection used after its release is a bug: a 500
            with translating_driver_errors():
                async with pool.acquire() as conn:
                    pass
                await conn.fetchval("SELECT 1")
        with pytest.raises(asyncpg.InterfaceError):  # so is entering the same transaction twice
            with translating_driver_errors():
                async with pool.acquire() as conn:
                    transaction = conn.transaction()
                    async with transaction, transaction:
                        pass
    finally:
        await pool.close()

