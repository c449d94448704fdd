"""PostgreSQL really stops: the API answers 503 with Retry-After (never 500, never a partial write),
and recovers by itself once the database is back — nobody restarts the service."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import asyncpg
import httpx
import pytest

from tests.support.deployment import deployment_settings
from tests.support.payloads import headers, submission
from tests.support.servers import running_api

URL = "/v1/businesses/acme/consult-submissions"


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_database_outage_gives_503_then_recovers_by_itself(own_postgres, how):
    server, tenant = own_postgres
    settings = dataclasses.replace(deployment_settings(), database_url=server.url(), db_connect_timeout_ms=500,
                                   db_acquire_timeout_ms=1000, log_format="json")
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        assert (await client.post(URL, json=submission(), headers=headers(tenant.key))).status_code == 202

        getattr(server, how)()
        during = await client.post(URL, json=submission(customer_id="cus_outage"), headers=headers(tenant.key))
        assert during.status_code == 503
        assert during.headers["retry-after"] == "1"
        assert during.headers["content-type"] == "application/problem+json"
        assert during.json()["type"] == "https://intake.dev/problems/database-unavailable"
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"] == "unavailable"

        server.start()
        retry_key = headers(tenant.key)
        deadline = time.monotonic() + 20
        while True:
            response = await client.post(URL, json=submission(customer_id="cus_outage"), headers=retry_key)
            if response.status_code != 503 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert response.status_code == 202, response.text
        assert (await client.get("/readyz")).status_code == 200

    conn = await asyncpg.connect(server.url())
    try:  # the failed attempt left nothing behind; the retry wrote exactly one event
        assert await conn.fetchval("SELECT count(*) FROM events") == 2
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 2
    finally:
        await conn.close()
