"""GET …/consultations/{id}/history: a consultation's events from the log, in order, for keys with
audit:read on its own business; and who may ask for `?as_of=`."""

from __future__ import annotations

import uuid

from service import admin
from tests.support.consults import decide, submit
from tests.support.payloads import decision, headers, submission
from tests.support.reads import api, assert_problem, ok, read

FIELDS = {"position", "event_id", "stream_id", "type", "version", "recorded_at", "data", "metadata"}


async def test_a_decided_consultation_shows_its_submission_the_deduplicated_resubmission_and_its_decision(
        settings, tenant):
    async with api(settings) as client:
        sent = await submit(client, tenant, customer_id="cus_a")
        again = await client.post("/v1/businesses/acme/consult-submissions", json=submission(customer_id="cus_a"),
                                  headers=headers(tenant.key))
        decided = await decide(client, "acme", sent["consultation_id"], decision("rejected"), tenant.key)
        assert again.status_code == 200 and decided.status_code == 200, (again.text, decided.text)
        history = await ok(read(client, tenant, f"/consultations/{sent['consultation_id']}/history", key=tenant.key))
    assert [event["type"] for event in history] == [
        "consult.submitted.v1", "consult.submission_deduplicated.v1", "consult.decided.v1"]
    assert all(set(event) == FIELDS for event in history)
    assert [event["position"] for event in history] == sorted(event["position"] for event in history)
    submitted, deduplicated, verdict = history
    assert submitted["position"] == sent["position"] and submitted["data"]["patient"]["last_name"] == "Lovelace"
    assert (submitted["stream_id"], submitted["version"], verdict["version"]) == (verdict["stream_id"], 1, 2)
    assert deduplicated["stream_id"] != submitted["stream_id"] and deduplicated["version"] == 1
    assert deduplicated["data"]["open_submission_id"] == sent["submission_id"]
    assert verdict["data"]["decision"] == "rejected" and verdict["metadata"]["actor"].startswith("api_key:")


async def test_another_business_cannot_read_the_history_and_its_own_path_does_not_find_it(
        settings, tenant, other_tenant):
    async with api(settings) as client:
        sent = await submit(client, tenant)
        path = f"/consultations/{sent['consultation_id']}/history"
        assert_problem(await read(client, tenant, path, key=other_tenant.key), 403, "forbidden")
        assert_problem(await read(client, other_tenant, path, key=other_tenant.key), 404, "not-found")
        assert_problem(await read(client, tenant, path), 403, "forbidden")  # consultations:read only
        assert_problem(await read(client, tenant, f"/consultations/{uuid.uuid4()}/history", key=tenant.key),
                       404, "not-found")


async def test_an_admin_key_reads_any_business_history(settings, tenant, db):
    admin_key = await admin.create_key(db, business=None, scopes=[], admin=True)
    async with api(settings) as client:
        sent = await submit(client, tenant)
        history = await ok(read(client, tenant, f"/consultations/{sent['consultation_id']}/history",
                                key=admin_key.key))
    assert [event["event_id"] for event in history] == [sent["event_id"]]


async def test_as_of_needs_audit_read_while_the_present_needs_only_consultations_read(settings, tenant, db):
    async with api(settings) as client:
        sent = await submit(client, tenant)
        now = (await db.fetchval("SELECT clock_timestamp()")).isoformat()
        path = f"/consultations/{sent['consultation_id']}"
        assert_problem(await read(client, tenant, path, as_of=now), 403, "forbidden")
        then = await ok(read(client, tenant, path, key=tenant.key, as_of=now))
    assert then["consultation_id"] == sent["consultation_id"] and then["status"] == "pending"
