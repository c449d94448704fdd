"""The read API against a real server, PostgreSQL and projector: data goes in through
the submission endpoint and reaches the read tables through `Projector.sweep()`."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from projections.projector import Projector
from service import admin
from tests.support.payloads import headers, submission
from tests.support.servers import running_api
from tests.support.tenants import TenantKeys

SUBMIT = "/v1/businesses/{slug}/consult-submissions"
BASE = "/v1/businesses/{slug}"
PROBLEMS = "https://intake.dev/problems/"
CONSULTATION_FIELDS = {"consultation_id", "submission_id", "patient_id", "customer_id", "product_id", "status",
                       "submitted_at", "decided_at", "decision", "version"}
PATIENT_FIELDS = {"patient_id", "customer_id", "first_name", "last_name", "email", "phone", "date_of_birth",
                  "updated_at"}
APPROVAL_FIELDS = {"consultation_id", "customer_id", "product_id", "status", "requested_at", "decided_at",
                   "clinician_id"}
LISTS = ["/consultations", "/patients", "/approvals"]
SERVER_WAIT_S = 2.0  # how long the server waits for min_position (service/http/reads.py)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=10) as pool:
        yield pool


@asynccontextmanager
async def api(settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        yield client


async def submit(client: httpx.AsyncClient, tenant: TenantKeys, **overrides: Any) -> dict[str, Any]:
    """A new pending consultation; its 202 body."""
    response = await client.post(SUBMIT.format(slug=tenant.slug), json=submission(**overrides),
                                 headers=headers(tenant.key))
    assert response.status_code == 202, response.text
    return response.json()


def read(client: httpx.AsyncClient, tenant: TenantKeys, path: str, key: str | None = None, **params: Any):
    """GET one of the tenant's read URLs with its read-only key (a coroutine, so tests can run it as a task)."""
    return client.get(BASE.format(slug=tenant.slug) + path, params=params,
                      headers={"Authorization": f"Bearer {key or tenant.read_only_key}"})


async def ok(response_coroutine) -> Any:
    response = await response_coroutine
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["type"], body["status"]) == (PROBLEMS + slug, status)
    return body


async def walk(client: httpx.AsyncClient, tenant: TenantKeys, path: str, **params: Any) -> list[list[dict]]:
    """Every page of a list, following next_cursor."""
    pages, cursor = [], None
    while True:
        body = await ok(read(client, tenant, path, **params, **({"cursor": cursor} if cursor else {})))
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


async def business_id(db: asyncpg.Connection, tenant: TenantKeys) -> int:
    return await db.fetchval("SELECT id FROM businesses WHERE slug = $1", tenant.slug)


async def sweep_once_the_read_is_waiting(pool: asyncpg.Pool, request: asyncio.Task, at_least_s: float = 0.1) -> None:
    """Project the log once the read has been in flight for `at_least_s`, and prove it was still waiting."""
    started = time.monotonic()
    while time.monotonic() - started < at_least_s and not request.done():
        await asyncio.sleep(0.01)
    if request.done():
        await request  # an early error answer fails here, with its body
        pytest.fail("the read answered before the projector ran")
    await Projector(pool).sweep()


async def test_pages_of_seven_walk_twenty_five_consultations_exactly_once_in_submission_order(
        settings, tenant, pool):
    async with api(settings) as client:
        submitted = [await submit(client, tenant, customer_id=f"cus_{i}") for i in range(25)]
        await Projector(pool).sweep()
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


async def test_malformed_query_parameters_are_400_problems_on_every_list(settings, tenant, pool):
    foreign_cursor = base64.urlsafe_b64encode(f"p:{uuid.uuid4()}".encode()).decode()
    bad_params = [{"limit": "0"}, {"limit": "abc"}, {"limit": "-1"}, {"limit": "1.5"}, {"cursor": "not-a-cursor"},
                  {"cursor": "%%%"}, {"cursor": base64.urlsafe_b64encode(b"c:99999999999999999999:x").decode()},
                  {"min_position": "abc"}, {"min_position": "-3"}, {"min_position": str(2**64)}]
    async with api(settings) as client:
        await submit(client, tenant)
        await Projector(pool).sweep()
        for path in LISTS:
            for params in bad_params + ([] if path == "/patients" else [{"status": "open"}]):
                response = await read(client, tenant, path, **params)
                assert_problem(response, 400, "invalid-parameter")
                assert all(v not in response.text for v in params.values() if len(v) > 2), "never echo input"
        assert_problem(await read(client, tenant, "/consultations", cursor=foreign_cursor), 400, "invalid-parameter")


async def test_a_key_of_one_business_is_forbidden_on_another_business_urls(settings, tenant, other_tenant, pool):
    async with api(settings) as client:
        theirs = await submit(client, other_tenant)
        await Projector(pool).sweep()
        paths = [*LISTS, f"/consultations/{theirs['consultation_id']}", f"/patients/{uuid.uuid4()}"]
        for path in paths:
            for key in (tenant.key, tenant.read_only_key):
                assert_problem(await read(client, other_tenant, path, key=key), 403, "forbidden")


async def test_a_key_without_the_read_scope_is_forbidden(settings, tenant, db):
    writer = await admin.create_key(db, business=tenant.slug, scopes=["submissions:write"], admin=False)
    async with api(settings) as client:
        for path in LISTS:
            assert_problem(await read(client, tenant, path, key=writer.key), 403, "forbidden")
        assert (await read(client, tenant, "/consultations", key="ik_unknown")).status_code == 401


async def test_a_business_never_sees_another_business_rows(settings, tenant, other_tenant, pool):
    async with api(settings) as client:
        ours = await submit(client, tenant)
        theirs = await submit(client, other_tenant)  # the same customer and product ids, another business
        await Projector(pool).sweep()
        listed = await ok(read(client, tenant, "/consultations"))
        patients = await ok(read(client, tenant, "/patients"))
        approvals = await ok(read(client, tenant, "/approvals"))
        their_patients = await ok(read(client, other_tenant, "/patients"))
        foreign = await read(client, tenant, f"/consultations/{theirs['consultation_id']}")
        foreign_patient = await read(client, tenant, f"/patients/{their_patients['items'][0]['patient_id']}")
    assert [c["consultation_id"] for c in listed["items"]] == [ours["consultation_id"]]
    assert [a["consultation_id"] for a in approvals["items"]] == [ours["consultation_id"]]
    assert len(patients["items"]) == 1 and patients["items"][0] != their_patients["items"][0]
    assert_problem(foreign, 404, "not-found")
    assert_problem(foreign_patient, 404, "not-found")


async def test_a_consultation_and_its_patient_read_by_id_show_the_submission(settings, tenant, pool):
    async with api(settings) as client:
        sent = await submit(client, tenant, customer_id="cus_ada")
        await Projector(pool).sweep()
        consultation = await ok(read(client, tenant, f"/consultations/{sent['consultation_id']}"))
        patient = await ok(read(client, tenant, f"/patients/{consultation['patient_id']}"))
    assert set(consultation) == CONSULTATION_FIELDS
    assert consultation["consultation_id"] == sent["consultation_id"]
    assert consultation["submission_id"] == sent["submission_id"]
    assert (consultation["customer_id"], consultation["product_id"]) == ("cus_ada", "prod_abc")
    assert (consultation["status"], consultation["decision"], consultation["decided_at"]) == ("pending", None, None)
    assert consultation["version"] == 1
    assert set(patient) == PATIENT_FIELDS
    assert patient == {**patient, "customer_id": "cus_ada", "first_name": "Ada", "last_name": "Lovelace",
                       "email": "ada@example.com", "phone": "+15555550100", "date_of_birth": "1990-12-10"}


@pytest.mark.parametrize("path", ["/consultations/{}", "/patients/{}"])
async def test_an_unknown_or_malformed_id_is_404(settings, tenant, path):
    async with api(settings) as client:
        for id_ in (uuid.uuid4(), "not-a-uuid", "1"):
            assert_problem(await read(client, tenant, path.format(id_)), 404, "not-found")


async def test_status_and_customer_filters_select_only_matching_consultations(settings, tenant, pool, db):
    async with api(settings) as client:
        sent = [await submit(client, tenant, customer_id=f"cus_{i % 2}", product_id=f"prod_{i}") for i in range(6)]
        await Projector(pool).sweep()
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


async def test_patients_page_in_patient_id_order_each_exactly_once(settings, tenant, pool):
    async with api(settings) as client:
        for i in range(5):
            await submit(client, tenant, customer_id=f"cus_{i}")
        await Projector(pool).sweep()
        pages = await walk(client, tenant, "/patients", limit=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    ids = [p["patient_id"] for page in pages for p in page]
    assert ids == sorted(ids, key=uuid.UUID) and len(set(ids)) == 5
    assert {p["customer_id"] for page in pages for p in page} == {f"cus_{i}" for i in range(5)}


@pytest.mark.parametrize("path", ["/consultations/{consultation_id}", "/consultations", "/patients", "/approvals"])
async def test_min_position_waits_for_the_projector_and_answers_with_the_fresh_row(settings, tenant, pool, path):
    async with api(settings) as client:
        for round_ in range(2):  # the second time, the server's floor is past the first write
            sent = await submit(client, tenant, customer_id=f"cus_{round_}")
            request = asyncio.create_task(
                ok(read(client, tenant, path.format(**sent), min_position=sent["position"])))
            await sweep_once_the_read_is_waiting(pool, request)
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


async def test_min_position_already_applied_answers_at_once_whatever_other_businesses_lag(
        settings, tenant, other_tenant, pool):
    async with api(settings) as client:
        sent = await submit(client, tenant)
        await Projector(pool).sweep()
        theirs = await submit(client, other_tenant)  # never projected
        for position in (sent["position"], theirs["position"]):
            started = time.monotonic()
            body = await ok(read(client, tenant, "/consultations", min_position=position))
            assert time.monotonic() - started < SERVER_WAIT_S / 2
            assert [c["consultation_id"] for c in body["items"]] == [sent["consultation_id"]]


async def test_min_position_waits_again_when_checkpoints_are_reset_under_the_servers_floor(
        settings, tenant, pool, db):
    async with api(settings) as client:
        sent = await submit(client, tenant)
        await Projector(pool).sweep()
        await ok(read(client, tenant, "/consultations", min_position=sent["position"]))  # the floor moves past it
        # What a rebuild does: the read model and its checkpoints start again from nothing.
        await db.execute("DELETE FROM projection_checkpoints WHERE projection = 'consultations'")
        await db.execute("DELETE FROM consultations")
        request = asyncio.create_task(ok(read(client, tenant, "/consultations", min_position=sent["position"])))
        await sweep_once_the_read_is_waiting(pool, request)
        body = await request
    assert [c["consultation_id"] for c in body["items"]] == [sent["consultation_id"]]
