"""POST …/partners/{partner}/callbacks against the real API and log: signed Standard Webhooks
callbacks are recorded exactly once per webhook-id, and everything else is refused with a
problem and nothing appended."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid

import asyncpg
import httpx

from projections.projector import PROJECTIONS, Projector
from projections.rebuild import rebuild
from projections.verify import verify
from service import partners
from tests.support.consults import decide, submit
from tests.support.partners import add_partner, box, report
from tests.support.payloads import decision
from tests.support.reads import api, assert_problem, ok, read


async def partner_events(db: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every partner.status_reported event of the log."""
    return await db.fetch("SELECT position, stream_id, idempotency_key, payload ->> 'status' AS status FROM events "
                          "WHERE event_type = 'partner.status_reported' ORDER BY position")


async def approved(client: httpx.AsyncClient, tenant) -> str:
    """A consultation, submitted and approved; its id."""
    consult = await submit(client, tenant)
    verdict = await decide(client, tenant.slug, consult["consultation_id"], decision("approved"), tenant.key)
    assert verdict.status_code == 200, verdict.text
    return consult["consultation_id"]


async def test_fifty_concurrent_deliveries_of_one_callback_make_one_event_and_fifty_answers(settings, tenant, db):
    pharmacy = await add_partner(db, settings)
    async with api(settings) as client:
        consultation_id = await approved(client, tenant)
        sent_at = int(time.time())
        responses = await asyncio.gather(*(
            report(client, pharmacy.secret, consultation_id, "accepted", webhook_id="msg_once", at=sent_at)
            for _ in range(50)))
    assert [r.status_code for r in responses] == [200] * 50, [r.text for r in responses if r.status_code != 200]
    outcomes = sorted(r.json()["outcome"] for r in responses)
    assert outcomes == ["already_processed"] * 49 + ["processed"]
    [event] = await partner_events(db)
    assert {r.json()["position"] for r in responses} == {event["position"]}
    assert event["idempotency_key"] == "webhook:pharmacy:msg_once"


async def test_refused_callbacks_get_a_problem_and_append_nothing(settings, tenant, db):
    pharmacy = await add_partner(db, settings)
    async with api(settings) as client:
        consultation_id = await approved(client, tenant)
        before = await db.fetchval("SELECT max(position) FROM events")
        wrong_secret = await report(client, "whsec_" + "A" * 43 + "=", consultation_id)
        stale = await report(client, pharmacy.secret, consultation_id, at=int(time.time()) - 301)
        future = await report(client, pharmacy.secret, consultation_id, at=int(time.time()) + 301)
        stranger = await report(client, pharmacy.secret, consultation_id, partner="lab")
        other_business = await report(client, pharmacy.secret, consultation_id, slug="globex")
        unsigned = await client.post("/v1/businesses/acme/partners/pharmacy/callbacks", json={})
        assert await db.fetchval("SELECT max(position) FROM events") == before
    assert_problem(wrong_secret, 401, "invalid-webhook-signature")
    assert_problem(stale, 401, "stale-webhook-timestamp")
    assert_problem(future, 401, "stale-webhook-timestamp")
    assert_problem(stranger, 401, "invalid-webhook-signature")
    assert_problem(other_business, 401, "invalid-webhook-signature")
    assert_problem(unsigned, 400, "invalid-webhook-headers")


async def test_after_rotation_both_secrets_verify_until_the_old_one_is_removed(settings, tenant, db):
    first = await add_partner(db, settings)
    second = await partners.rotate_partner(db, box(settings), "acme", "pharmacy")
    async with api(settings) as client:
        consultation_id = await approved(client, tenant)
        by_old = await report(client, first.secret, consultation_id, "accepted")
        by_new = await report(client, second.secret, consultation_id, "in_progress")
        await partners.remove_partner(db, "acme", "pharmacy", first.secret_id)
        rotated_out = await report(client, first.secret, consultation_id, "completed")
        still_new = await report(client, second.secret, consultation_id, "completed")
    assert (by_old.status_code, by_new.status_code, still_new.status_code) == (200, 200, 200)
    assert_problem(rotated_out, 401, "invalid-webhook-signature")
    assert [e["status"] for e in await partner_events(db)] == ["accepted", "in_progress", "completed"]


async def test_a_status_the_consultation_cannot_take_is_a_409_with_the_reason(settings, tenant, db):
    pharmacy = await add_partner(db, settings)
    async with api(settings) as client:
        pending = (await submit(client, tenant, customer_id="cus_pending"))["consultation_id"]
        too_early = await report(client, pharmacy.secret, pending, "accepted")
        consultation_id = await approved(client, tenant)
        done = await report(client, pharmacy.secret, consultation_id, "completed", webhook_id="msg_done")
        backwards = await report(client, pharmacy.secret, consultation_id, "in_progress")
        late_duplicate = await report(client, pharmacy.secret, consultation_id, "completed", webhook_id="msg_done")
        unknown = await report(client, pharmacy.secret, uuid.uuid4(), "accepted")
        invalid = await report(client, pharmacy.secret, consultation_id, "lost")
        unknown_field = await report(client, pharmacy.secret, consultation_id, extra={"note": "x"})
    assert "pending, not approved" in assert_problem(too_early, 409, "partner-status-refused")["detail"]
    assert done.status_code == 200 and done.json()["outcome"] == "processed"
    assert "already completed" in assert_problem(backwards, 409, "partner-status-refused")["detail"]
    assert late_duplicate.status_code == 200 and late_duplicate.json()["outcome"] == "already_processed"
    assert_problem(unknown, 404, "not-found")
    assert assert_problem(invalid, 422, "validation-failed")["errors"][0]["field"] == "status"
    assert_problem(unknown_field, 422, "validation-failed")
    assert len(await partner_events(db)) == 1


async def test_the_read_model_and_the_history_show_the_partner_status(settings, tenant, db, keyring):
    pharmacy = await add_partner(db, settings)
    async with api(settings) as client:
        consultation_id = await approved(client, tenant)
        sent_at = int(time.time())
        answer = await report(client, pharmacy.secret, consultation_id, "in_progress", at=sent_at,
                              extra={"reference": "rx-1"})
        assert answer.status_code == 200, answer.text
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        try:
            await Projector(pool, keyring).sweep()
        finally:
            await pool.close()
        view = await ok(read(client, tenant, f"/consultations/{consultation_id}"))
        history = await ok(read(client, tenant, f"/consultations/{consultation_id}/history", key=tenant.key))
    shown = view["partner_status"]
    assert (shown["partner"], shown["status"]) == ("pharmacy", "in_progress")
    assert dt.datetime.fromisoformat(shown["reported_at"]).timestamp() == sent_at  # the signed time
    last = history[-1]
    assert last["type"] == "partner.status_reported.v1" and last["metadata"]["actor"] == "partner:pharmacy"
    assert (last["data"]["status"], last["data"]["reference"]) == ("in_progress", "rx-1")


async def test_a_rebuild_folds_partner_statuses_as_the_live_projector_did(settings, tenant, db, keyring):
    pharmacy = await add_partner(db, settings)
    async with api(settings) as client:
        consultation_id = await approved(client, tenant)
        for status in ("accepted", "completed"):
            assert (await report(client, pharmacy.secret, consultation_id, status)).status_code == 200
    async with asyncpg.create_pool(settings.database_url, min_size=1, max_size=2) as pool:
        await Projector(pool, keyring).sweep()
    live = await db.fetchrow("SELECT partner, partner_status, partner_status_at FROM consultations")
    await rebuild(settings.owner_database_url, list(PROJECTIONS), keyring)
    assert await db.fetchrow("SELECT partner, partner_status, partner_status_at FROM consultations") == live
    assert (live["partner"], live["partner_status"]) == ("pharmacy", "completed")
    assert all(verdict.equal for verdict in await verify(db, list(PROJECTIONS), keyring))
