"""The read API's pages, filters and views against a real server, PostgreSQL and projector: data
goes in through the submission endpoint and reaches the read tables through `Projector.sweep()`.
Who may read what is in test_read_access.py; read-your-writes (min_position) in test_read_your_writes.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from projections.projector import Projector
from tests.support.consults import submit
from tests.support.reads import api, assert_problem, business_id, ok, read, walk

CONSULTATION_FIELDS = {"consultation_id", "submission_id", "patient_id", "customer_id", "product_id", "status",
                       "submitted_at", "decided_at", "decision", "version", "consent", "partner_status"}
PATIENT_FIELDS = {"patient_id", "customer_id", "first_name", "last_name", "email", "phone", "date_of_birth",
                  "updated_at", "erased"}
APPROVAL_FIELDS = {"consultation_id", "customer_id", "product_id", "status", "requested_at", "decided_at",
                   "clinician_id"}


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=10) as pool:
        yield pool


async def test_pages_of_seven_walk_twenty_five_consultations_exactly_once_in_submission_order(
        settings, tenant, pool, keyring):
    async with api(settings) as client:
        submitted = [await submit(client, tenant, customer_id=f"cus_{i}") for i in range(25)]
        await Projector(pool, keyring).sweep()
        pages = await walk(client, tenant, "/consultations", limit=7)
    assert [len(page) for page in pages] == [7, 7, 7, 4]
    seen = [item["consultation_id"] for page in pages for item in page]
    by_position = sorted(submitted, key=lambda s: s["position"])
    assert seen == [s["consultation_id"] for s in by_position]


async def test_lists_default_to_twenty_items_and_clamp_a_limit_above_one_hundred(settings, tenant, db):
    # Read-model rows inserted directly: what is under test is the page size, not the projector.
    await db.execute(
        "INSERT INTO consultations SELECT gen_random_uuid(), $1, gen_random_uuid(), gen_random_uuid(), "
        "'cus_' || i, 'prod_abc', 'pending', now(), NULL, NULL, NULL, NULL, 'stream-' || i, 1, i "
        "FROM generate_series(1, 130) AS i", await business_id(db, tenant))
    async with api(settings) as client:
        default = await ok(read(client, tenant, "/consultations"))
        clamped = await ok(read(client, tenant, "/consultations", limit=1000))
        rest = await ok(read(client, tenant, "/consultations", limit=1000, cursor=clamped["next_cursor"]))
    assert len(default["items"]) == 20 and default["next_cursor"] is not None
    assert len(clamped["items"]) == 100 and clamped["next_cursor"] is not None
    assert len(rest["items"]) == 30 and rest["next_cursor"] is None


async def test_a_consultation_and_its_patient_read_by_id_show_the_submission(settings, tenant, pool, keyring):
    async with api(settings) as client:
        sent = await submit(client, tenant, customer_id="cus_ada")
        await Projector(pool, keyring).sweep()
        consultation = await ok(read(client, tenant, f"/consultations/{sent['consultation_id']}"))
        patient = await ok(read(client, tenant, f"/patients/{consultation['patient_id']}"))
    assert set(consultation) == CONSULTATION_FIELDS
    assert consultation["consultation_id"] == sent["consultation_id"]
    assert consultation["submission_id"] == sent["submission_id"]
    assert (consultation["customer_id"], consultation["product_id"]) == ("cus_ada", "prod_abc")
    assert (consultation["status"], consultation["decision"], consultation["decided_at"]) == ("pending", None, None)
    assert consultation["version"] == 1 and consultation["partner_status"] is None  # no partner has reported
    assert set(patient) == PATIENT_FIELDS
    assert patient == {**patient, "customer_id": "cus_ada", "first_name": "Ada", "last_name": "Lovelace",
                       "email": "ada@example.com", "phone": "+15555550100", "date_of_birth": "1990-12-10"}


@pytest.mark.parametrize("path", ["/consultations/{}", "/patients/{}"])
async def test_an_unknown_or_malformed_id_is_404(settings, tenant, path):
    async with api(settings) as client:
        for id_ in (uuid.uuid4(), "not-a-uuid", "1"):
            assert_problem(await read(client, tenant, path.format(id_)), 404, "not-found")


async def test_status_and_customer_filters_select_only_matching_consultations(settings, tenant, pool, db, keyring):
    async with api(settings) as client:
        sent = [await submit(client, tenant, customer_id=f"cus_{i % 2}", product_id=f"prod_{i}") for i in range(6)]
        await Projector(pool, keyring).sweep()
        # A decided consultation, written straight into the read model: the decision
        # endpoint is tested elsewhere, the read of a decided row is tested here.
        decided = sent[2]["consultation_id"]
        await db.execute("UPDATE consultations SET status = 'approved', decision = 'approved', reason = 'ok', "
                         "clinician_id = 'clin_7', decided_at = now(), version = 2 WHERE consultation_id = $1",
                         uuid.UUID(decided))
        await db.execute("UPDATE approvals SET status = 'approved', decided_at = now(), clinician_id = 'clin_7' "
                         "WHERE consultation_id = $1", uuid.UUID(decided))
        approved = await ok(read(client, tenant, "/consultations", status="approved"))
        pending = await walk(client, tenant, "/consultations", status="pending", limit=2)
        customer = await walk(client, tenant, "/consultations", customer_id="cus_1", limit=2)
        both = await ok(read(client, tenant, "/consultations", customer_id="cus_0", status="pending"))
        queue = await walk(client, tenant, "/approvals", limit=2)
        approved_queue = await ok(read(client, tenant, "/approvals", status="approved"))
    assert [c["consultation_id"] for c in approved["items"]] == [decided]
    assert approved["items"][0]["decision"] == {"decision": "approved", "reason": "ok", "clinician_id": "clin_7"}
    assert approved["items"][0]["decided_at"] is not None
    assert [c["consultation_id"] for p in pending for c in p] == [s["consultation_id"] for s in sent if
                                                                 s["consultation_id"] != decided]
    assert [c["consultation_id"] for p in customer for c in p] == [s["consultation_id"] for s in sent[1::2]]
    assert [c["consultation_id"] for c in both["items"]] == [sent[0]["consultation_id"], sent[4]["consultation_id"]]
    assert [a["consultation_id"] for p in queue for a in p] == [s["consultation_id"] for s in sent if
                                                               s["consultation_id"] != decided]
    assert all(set(a) == APPROVAL_FIELDS and a["status"] == "pending" for p in queue for a in p)
    assert [(a["consultation_id"], a["clinician_id"]) for a in approved_queue["items"]] == [(decided, "clin_7")]


async def test_patients_page_in_patient_id_order_each_exactly_once(settings, tenant, pool, keyring):
    async with api(settings) as client:
        for i in range(5):
            await submit(client, tenant, customer_id=f"cus_{i}")
        await Projector(pool, keyring).sweep()
        pages = await walk(client, tenant, "/patients", limit=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    ids = [p["patient_id"] for page in pages for p in page]
    assert ids == sorted(ids, key=uuid.UUID) and len(set(ids)) == 5
    assert {p["customer_id"] for page in pages for p in page} == {f"cus_{i}" for i in range(5)}
