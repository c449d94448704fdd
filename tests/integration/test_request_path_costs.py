"""What the submission path no longer pays for, each checked where it shows: the collector, the
database's own view of the API's connections; and the guard that now runs without copies still guards."""

from __future__ import annotations

import gc

import httpx

from tests.support.payloads import headers, submission
from tests.support.servers import running_api

URL = "/v1/businesses/acme/consult-submissions"


async def test_startup_freezes_what_it_built_so_full_collections_skip_it(settings):
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
            assert (await client.get("/livez")).status_code == 200
            assert gc.get_freeze_count() > 10_000  # the routes, schemas and modules loaded for the app
    finally:
        gc.unfreeze()


async def test_api_connections_go_back_to_the_pool_without_a_reset_query(settings, tenant, db):
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        for n in range(5):
            created = await client.post(URL, json=submission(customer_id=f"cus_{n}"), headers=headers(tenant.key))
            assert created.status_code == 202, created.text
        last = await db.fetch("SELECT state, query FROM pg_stat_activity WHERE application_name = 'intake-api'")
    assert last, "the API held no connection to look at"
    for row in last:  # idle, and the last statement a transaction's end, not asyncpg's RESET ALL
        assert row["state"] == "idle" and "RESET ALL" not in row["query"] and "UNLISTEN" not in row["query"]


async def test_the_submission_guard_still_refuses_a_key_without_the_scope(settings, tenant):
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        missing = await client.post(URL, json=submission(), headers={**headers(tenant.key), "Authorization": "Bearer ik_nope"})
        reader = await client.post(URL, json=submission(), headers=headers(tenant.read_only_key))
    assert missing.status_code == 401 and reader.status_code == 403
