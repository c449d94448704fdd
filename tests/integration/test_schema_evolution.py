"""Schema evolution against real PostgreSQL: a version-1 `consult.submitted` row, inserted with SQL as
the previous release wrote it, is read, projected, decided and retried by this release, which reads
it as version 2 (consent: null) and still records it as version 1. A version-2 submission carries
its consent to the read API, and version 1 can no longer be written."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import msgspec
import pytest

from events.codec import NotWritable
from events.store import EventStore
from events.types import ConsultSubmitted, ConsultSubmittedV1, EventMetadata
from projections.projector import Projector
from service import admin, domain
from tests.support.consults import DECIDE, SUBMIT
from tests.support.fold import actual_tables, expected_tables
from tests.support.old_releases import V1_SUBMISSION_BODY, v1_fingerprint, v1_payload
from tests.support.payloads import decision, headers, submission
from tests.support.reads import api, assert_problem, business_id, ok, read

OLD_KEY = "key-sent-before-consent"
# The append of the previous release (sql/queries/events.sql: append_events), for one event.
_OLD_APPEND = """
WITH e AS (
    INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, business_id,
                        idempotency_key, request_fingerprint, payload, metadata)
    VALUES ($1, $2, 1, 'consult.submitted', 1, $3, $4, $5, $6::jsonb, $7::jsonb)
    RETURNING position, stream_id, tx_id
)
INSERT INTO outbox (position, stream_id, tx_id) SELECT position, stream_id, tx_id FROM e RETURNING position"""


@dataclass(frozen=True)
class OldSubmission:
    """What the previous release recorded for V1_SUBMISSION_BODY under OLD_KEY."""

    event_id: uuid.UUID
    submission_id: uuid.UUID
    consultation_id: uuid.UUID
    position: int


@pytest.fixture
async def old_submission(db: asyncpg.Connection, tenant) -> OldSubmission:
    business = await business_id(db, tenant)
    event_id, submission_id, consultation_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    payload = v1_payload(submission_id=submission_id, consultation_id=consultation_id,
                         patient_id=domain.patient_id_for(business, "cus_123"))
    metadata = '{"request_id":"req-old","actor":"api_key:old","correlation_id":"req-old"}'
    position = await db.fetchval(_OLD_APPEND, event_id, domain.slot_stream(business, "cus_123", "prod_abc"),
                                 business, OLD_KEY, v1_fingerprint(business), payload, metadata)
    return OldSubmission(event_id, submission_id, consultation_id, position)


@pytest.fixture
async def pool(settings) -> AsyncIterator[asyncpg.Pool]:
    """The app role's pool, as the API and the workers use it."""
    async with asyncpg.create_pool(settings.database_url, min_size=1, max_size=5) as pool:
        yield pool


async def test_a_version_1_submission_replays_upcast_with_its_recorded_version(settings, db, pool, old_submission, keyring):
    [event] = await EventStore(pool, keyring).read_all(after=0, limit=10)
    assert (event.event_type, event.schema_version, event.position) == ("consult.submitted", 1, old_submission.position)
    assert isinstance(event.data, ConsultSubmitted) and event.data.consent is None
    assert event.data.submission_id == old_submission.submission_id
    admin_key = (await admin.create_key(db, business=None, scopes=[], admin=True)).key
    async with api(settings) as client:
        response = await client.get("/v1/events", headers={"Authorization": f"Bearer {admin_key}"})
    [shown] = response.json()["events"]
    assert (shown["type"], shown["version"], shown["event_id"]) == ("consult.submitted.v1", 1, str(event.event_id))
    assert shown["data"]["type"] == "consult.submitted.v2" and shown["data"]["consent"] is None
    assert shown["data"]["consultation_id"] == str(old_submission.consultation_id)
    # nothing was rewritten: the row is still the previous release's version 1
    assert await db.fetchval("SELECT payload->>'type' FROM events") == "consult.submitted.v1"


async def test_a_version_1_submission_projects_to_a_consultation_without_consent(settings, db, pool, tenant,
                                                                                 old_submission, keyring):
    await Projector(pool, keyring).sweep()
    row = await db.fetchrow("SELECT * FROM consultations")
    assert (row["consultation_id"], row["status"]) == (old_submission.consultation_id, "pending")
    assert (row["consent_document_version"], row["consent_accepted_at"]) == (None, None)
    assert await actual_tables(db) == await expected_tables(db, keyring)
    async with api(settings) as client:
        shown = await ok(read(client, tenant, f"/consultations/{old_submission.consultation_id}"))
        listed = await ok(read(client, tenant, "/consultations"))
    assert shown["consent"] is None and shown["submission_id"] == str(old_submission.submission_id)
    assert shown["submitted_at"] == "2026-01-05T09:30:00Z" and listed["items"] == [shown]


async def test_a_consultation_submitted_as_version_1_can_be_decided(settings, db, pool, tenant, old_submission, keyring):
    async with api(settings) as client:
        response = await client.post(DECIDE.format(slug=tenant.slug, consultation_id=old_submission.consultation_id),
                                     json=decision(), headers=headers(tenant.key))
        assert response.status_code == 200, response.text
        await Projector(pool, keyring).sweep()
        shown = await ok(read(client, tenant, f"/consultations/{old_submission.consultation_id}"))
    assert (shown["status"], shown["decision"]["clinician_id"], shown["consent"]) == ("approved", "clin_7", None)
    assert shown["version"] == 2
    assert await actual_tables(db) == await expected_tables(db, keyring)


async def test_a_retry_of_a_request_first_sent_before_consent_existed_replays_its_answer(settings, db, tenant,
                                                                                       old_submission):
    async with api(settings) as client:
        url = SUBMIT.format(slug=tenant.slug)
        retry = await client.post(url, content=V1_SUBMISSION_BODY, headers={
            **headers(tenant.key, OLD_KEY), "Content-Type": "application/json"})
        with_consent = await client.post(url, json=submission(consent={
            "document_version": "tc-1", "accepted_at": "2026-01-05T09:00:00Z"}), headers=headers(tenant.key, OLD_KEY))
    assert retry.status_code == 202, retry.text
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == {"submission_id": str(old_submission.submission_id),
                            "consultation_id": str(old_submission.consultation_id), "status": "pending",
                            "event_id": str(old_submission.event_id), "position": old_submission.position}
    assert_problem(with_consent, 422, "idempotency-key-reused")
    assert await db.fetchval("SELECT count(*) FROM events") == 1


async def test_a_version_2_submission_carries_its_consent_to_the_consultation(settings, db, pool, tenant, keyring):
    accepted = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
    consent = {"document_version": "tc-2026.12_b", "accepted_at": accepted.astimezone(
        dt.timezone(dt.timedelta(hours=2))).isoformat()}
    async with api(settings) as client:
        response = await client.post(SUBMIT.format(slug=tenant.slug), json=submission(consent=consent),
                                     headers=headers(tenant.key))
        assert response.status_code == 202, response.text
        sent = response.json()
        await Projector(pool, keyring).sweep()
        shown = await ok(read(client, tenant, f"/consultations/{sent['consultation_id']}",
                              min_position=sent["position"]))
    assert shown["consent"]["document_version"] == "tc-2026.12_b"
    assert dt.datetime.fromisoformat(shown["consent"]["accepted_at"]) == accepted
    row = await db.fetchrow("SELECT schema_version, payload->'consent' AS consent FROM events")
    assert row["schema_version"] == 2
    assert msgspec.json.decode(row["consent"]) == consent
    assert await actual_tables(db) == await expected_tables(db, keyring)


async def test_the_store_refuses_to_append_a_version_1_event_and_writes_nothing(db, pool, old_submission, keyring):
    [recorded] = await EventStore(pool, keyring).read_all(after=0, limit=1)
    assert isinstance(recorded.data, ConsultSubmitted)
    old = ConsultSubmittedV1(**{k: v for k, v in msgspec.structs.asdict(recorded.data).items() if k != "consent"})
    with pytest.raises(NotWritable):
        await EventStore(pool, keyring).append(
            stream_id="consult-another", expected_version=0, events=[(uuid.uuid4(), old)], business_id=1,
            metadata=EventMetadata(request_id="r", actor="cli:test", correlation_id="r"), idempotency=None)
    assert await db.fetchval("SELECT count(*) FROM events") == 1


async def test_a_version_1_submission_shows_in_its_consultations_history_upcast(settings, tenant, old_submission):
    async with api(settings) as client:
        history = await ok(read(client, tenant, f"/consultations/{old_submission.consultation_id}/history",
                                key=tenant.key))
    [shown] = history  # a list of events, oldest first
    assert (shown["type"], shown["position"], shown["event_id"]) == (
        "consult.submitted.v1", old_submission.position, str(old_submission.event_id))
    assert shown["data"]["type"] == "consult.submitted.v2" and shown["data"]["consent"] is None
