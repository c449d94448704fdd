"""The submission endpoint against a real server, PostgreSQL and event log."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx

from tests.support.payloads import headers, submission
from tests.support.servers import running_api
from tests.support.tenants import TenantKeys

URL = "/v1/businesses/{slug}/consult-submissions"


async def count_events(db: asyncpg.Connection) -> int:
    return await db.fetchval("SELECT count(*) FROM events")


async def test_new_submission_is_accepted_with_its_event_and_outbox_row(settings, tenant: TenantKeys, db):
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        response = await client.post(URL.format(slug=tenant.slug), json=submission(), headers=headers(tenant.key))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending"
    assert response.headers["location"] == f"/v1/businesses/acme/consultations/{body['consultation_id']}"
    assert "idempotent-replayed" not in response.headers
    assert response.headers["x-request-id"]
    row = await db.fetchrow("SELECT e.event_type, e.position, o.position AS outbox FROM events e "
                            "LEFT JOIN outbox o USING (position)")
    assert (row["event_type"], row["position"], row["outbox"]) == ("consult.submitted", body["position"], body["position"])


async def test_fifty_concurrent_retries_with_one_key_append_exactly_one_event(settings, tenant, db):
    key = uuid.uuid4().hex
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        responses = await asyncio.gather(*(
            client.post(URL.format(slug=tenant.slug), json=submission(), headers=headers(tenant.key, key))
            for _ in range(50)))
    assert {r.status_code for r in responses} == {202}
    assert len({r.content for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") != "true" for r in responses) == 1
    assert await count_events(db) == 1


async def test_fifty_concurrent_keys_for_one_slot_open_one_submission(settings, tenant, db):
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        responses = await asyncio.gather(*(
            client.post(URL.format(slug=tenant.slug), json=submission(), headers=headers(tenant.key))
            for _ in range(50)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 49 + [202]
    assert len({r.json()["submission_id"] for r in responses}) == 1
    assert await db.fetchval("SELECT count(*) FROM events WHERE event_type = 'consult.submitted'") == 1
    # Each answered request is recorded under its own key, so its answer never changes.
    assert await db.fetchval("SELECT count(DISTINCT idempotency_key) FROM events") == 50


async def test_replay_of_a_deduplicated_request_keeps_its_answer(settings, tenant, db):
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        first = await client.post(URL.format(slug=tenant.slug), json=submission(), headers=headers(tenant.key))
        dup_headers = headers(tenant.key)
        dup = await client.post(URL.format(slug=tenant.slug), json=submission(), headers=dup_headers)
        again = await client.post(URL.format(slug=tenant.slug), json=submission(), headers=dup_headers)
    assert (first.status_code, dup.status_code, again.status_code) == (202, 200, 200)
    assert dup.json() == first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"


async def test_key_reused_with_another_body_is_422_and_appends_nothing(settings, tenant, db):
    key = uuid.uuid4().hex
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        first = await client.post(URL.format(slug=tenant.slug), json=submission(), headers=headers(tenant.key, key))
        reused = await client.post(URL.format(slug=tenant.slug), json=submission(customer_id="cus_other"),
                                   headers=headers(tenant.key, key))
    assert first.status_code == 202
    assert reused.status_code == 422
    assert reused.headers["content-type"] == "application/problem+json"
    assert reused.json()["type"] == "https://intake.dev/problems/idempotency-key-reused"
    assert await count_events(db) == 1


async def test_missing_key_is_400_and_appends_nothing(settings, tenant, db):
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        response = await client.post(URL.format(slug=tenant.slug), json=submission(),
                                     headers={"Authorization": f"Bearer {tenant.key}"})
    assert response.status_code == 400
    assert response.json()["type"] == "https://intake.dev/problems/invalid-idempotency-key"
    assert await count_events(db) == 0
