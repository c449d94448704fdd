"""The decision endpoint against a real server, PostgreSQL and event log.

Every rejected request is checked to have appended nothing: the log after it is
exactly the log before it.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx

from tests.support.consults import DECIDE, decide, submit
from tests.support.payloads import decision, headers
from tests.support.servers import running_api

PROBLEMS = "https://intake.dev/problems/"


async def event_log(db: asyncpg.Connection) -> list[tuple[int, str, str]]:
    """The whole log as (position, stream, type)."""
    rows = await db.fetch("SELECT position, stream_id, event_type FROM events ORDER BY position")
    return [tuple(r) for r in rows]


async def decided_events_of(db: asyncpg.Connection, consultation_id: str) -> list[asyncpg.Record]:
    """The consult.decided events for one consultation, with the stream each sits in."""
    return await db.fetch("SELECT position, event_id, stream_id FROM events "
                          "WHERE event_type = 'consult.decided' AND payload ->> 'consultation_id' = $1",
                          consultation_id)


async def stream_of(db: asyncpg.Connection, consultation_id: str) -> str:
    """The stream the consultation's submission opened."""
    return await db.fetchval("SELECT stream_id FROM events WHERE event_type = 'consult.submitted' "
                             "AND payload ->> 'consultation_id' = $1", consultation_id)


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    """The response is the given problem+json; its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == PROBLEMS + slug
    assert body["status"] == status
    return body


async def test_decision_right_after_submission_is_recorded_before_any_projection(settings, tenant, db):
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        consult = await submit(client, tenant)
        response = await decide(client, tenant.slug, consult["consultation_id"], decision(), tenant.key)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert "idempotent-replayed" not in response.headers
    body = response.json()
    assert set(body) == {"consultation_id", "status", "event_id", "position"}
    assert (body["consultation_id"], body["status"]) == (consult["consultation_id"], "approved")
    [decided] = await decided_events_of(db, consult["consultation_id"])
    assert decided["stream_id"] == await stream_of(db, consult["consultation_id"])
    assert (str(decided["event_id"]), decided["position"]) == (body["event_id"], body["position"])
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE position = $1", body["position"]) == 1


async def test_twenty_concurrent_decisions_on_one_consultation_let_exactly_one_win(settings, tenant, db):
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        consult = await submit(client, tenant)
        responses = await asyncio.gather(*(
            decide(client, tenant.slug, consult["consultation_id"],
                   decision("approved" if i % 2 else "rejected"), tenant.key)
            for i in range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 19, statuses
    for loser in (r for r in responses if r.status_code == 409):
        assert_problem(loser, 409, "already-decided")
    [winner] = [r for r in responses if r.status_code == 200]
    [decided] = await decided_events_of(db, consult["consultation_id"])
    assert decided["position"] == winner.json()["position"]


async def test_twenty_concurrent_retries_with_one_key_all_get_the_one_answer(settings, tenant, db):
    key = uuid.uuid4().hex
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        consult = await submit(client, tenant)
        responses = await asyncio.gather(*(
            decide(client, tenant.slug, consult["consultation_id"], decision(), tenant.key, key)
            for _ in range(20)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") != "true" for r in responses) == 1
    assert len(await decided_events_of(db, consult["consultation_id"])) == 1


async def test_same_key_and_body_replays_the_answer_even_after_the_decision(settings, tenant, db):
    key = uuid.uuid4().hex
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        consult = await submit(client, tenant)
        first = await decide(client, tenant.slug, consult["consultation_id"], decision("rejected"), tenant.key, key)
        log = await event_log(db)
        again = await decide(client, tenant.slug, consult["consultation_id"], decision("rejected"), tenant.key, key)
    assert (first.status_code, again.status_code) == (200, 200), again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert again.json()["status"] == "rejected"
    assert await event_log(db) == log


async def test_same_key_with_another_body_or_consultation_is_422_and_appends_nothing(settings, tenant, db):
    key = uuid.uuid4().hex
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        consult = await submit(client, tenant)
        other = await submit(client, tenant, product_id="prod_other")
        first = await decide(client, tenant.slug, consult["consultation_id"], decision(), tenant.key, key)
        log = await event_log(db)
        changed_body = await decide(client, tenant.slug, consult["consultation_id"], decision("rejected"),
                                    tenant.key, key)
        other_consultation = await decide(client, tenant.slug, other["consultation_id"], decision(),
                                          tenant.key, key)
    assert first.status_code == 200
    assert_problem(changed_body, 422, "idempotency-key-reused")
    assert_problem(other_consultation, 422, "idempotency-key-reused")
    assert await event_log(db) == log


async def test_unknown_and_non_uuid_consultations_are_404_and_append_nothing(settings, tenant, db):
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        await submit(client, tenant)
        log = await event_log(db)
        unknown = await decide(client, tenant.slug, uuid.uuid4(), decision(), tenant.key)
        not_a_uuid = await decide(client, tenant.slug, "not-a-uuid", decision(), tenant.key)
    assert_problem(unknown, 404, "not-found")
    assert_problem(not_a_uuid, 404, "not-found")
    assert await event_log(db) == log


async def test_a_consultation_of_another_business_is_not_found(settings, tenant, other_tenant, db):
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        consult = await submit(client, tenant)
        log = await event_log(db)
        response = await decide(client, other_tenant.slug, consult["consultation_id"], decision(), other_tenant.key)
    assert_problem(response, 404, "not-found")
    assert await event_log(db) == log


async def test_keys_of_another_business_or_without_the_decide_scope_are_403(settings, tenant, other_tenant, db):
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        consult = await submit(client, tenant)
        log = await event_log(db)
        foreign = await decide(client, tenant.slug, consult["consultation_id"], decision(), other_tenant.key)
        read_only = await decide(client, tenant.slug, consult["consultation_id"], decision(), tenant.read_only_key)
    assert_problem(foreign, 403, "forbidden")
    assert_problem(read_only, 403, "forbidden")
    assert await event_log(db) == log


async def test_after_a_decision_the_customer_can_submit_again_and_that_one_is_decided_too(settings, tenant, db):
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        first = await submit(client, tenant)
        decided = await decide(client, tenant.slug, first["consultation_id"], decision("rejected"), tenant.key)
        second = await submit(client, tenant)
        decided_again = await decide(client, tenant.slug, second["consultation_id"], decision(), tenant.key)
        first_again = await decide(client, tenant.slug, first["consultation_id"], decision(), tenant.key)
    assert decided.status_code == 200
    assert second["consultation_id"] != first["consultation_id"]
    assert decided_again.status_code == 200, decided_again.text
    assert decided_again.json()["status"] == "approved"
    assert_problem(first_again, 409, "already-decided")
    assert await stream_of(db, first["consultation_id"]) == await stream_of(db, second["consultation_id"])
    assert len(await decided_events_of(db, first["consultation_id"])) == 1
    assert len(await decided_events_of(db, second["consultation_id"])) == 1


async def test_invalid_decision_bodies_are_422_naming_the_field_and_append_nothing(settings, tenant, db):
    without_reason = decision()
    del without_reason["reason"]
    cases = [(decision("maybe"), "decision"), (without_reason, "reason"),
             (decision(reason=""), "reason"), (decision(extra=1), "body")]  # an unknown name is never echoed
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        consult = await submit(client, tenant)
        log = await event_log(db)
        responses = [await decide(client, tenant.slug, consult["consultation_id"], body, tenant.key)
                     for body, _ in cases]
    for response, (_, field) in zip(responses, cases, strict=True):
        problem = assert_problem(response, 422, "validation-failed")
        assert [e["field"] for e in problem["errors"]] == [field]
    assert await event_log(db) == log


async def test_missing_key_or_non_json_body_is_rejected_and_appends_nothing(settings, tenant, db):
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        consult = await submit(client, tenant)
        url = DECIDE.format(slug=tenant.slug, consultation_id=consult["consultation_id"])
        log = await event_log(db)
        no_key = await client.post(url, json=decision(), headers={"Authorization": f"Bearer {tenant.key}"})
        as_text = await client.post(url, content=b"decision=approved",
                                    headers={**headers(tenant.key), "Content-Type": "text/plain"})
        malformed = await client.post(url, content=b"{not json",
                                      headers={**headers(tenant.key), "Content-Type": "application/json"})
    assert_problem(no_key, 400, "invalid-idempotency-key")
    assert_problem(as_text, 415, "unsupported-media-type")
    assert_problem(malformed, 400, "malformed-json")
    assert await event_log(db) == log
