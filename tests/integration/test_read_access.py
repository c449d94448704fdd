"""Who may read what through the read API: a business sees only its own rows, keys need the read
scope and their own business, and malformed query values are 400 problems that never echo input."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from projections.projector import Projector
from service import admin
from tests.support.consults import submit
from tests.support.reads import LISTS, api, assert_problem, ok, read


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=10) as pool:
        yield pool


async def test_malformed_query_parameters_are_400_problems_on_every_list(settings, tenant, pool, keyring):
    foreign_cursor = base64.urlsafe_b64encode(f"p:{uuid.uuid4()}".encode()).decode()
    bad_params = [{"limit": "0"}, {"limit": "abc"}, {"limit": "-1"}, {"limit": "1.5"}, {"cursor": "not-a-cursor"},
                  {"cursor": "%%%"}, {"cursor": base64.urlsafe_b64encode(b"c:99999999999999999999:x").decode()},
                  {"min_position": "abc"}, {"min_position": "-3"}, {"min_position": str(2**64)}]
    async with api(settings) as client:
        await submit(client, tenant)
        await Projector(pool, keyring).sweep()
        for path in LISTS:
            for params in bad_params + ([] if path == "/patients" else [{"status": "open"}]):
                response = await read(client, tenant, path, **params)
                assert_problem(response, 400, "invalid-parameter")
                assert all(v not in response.text for v in params.values() if len(v) > 2), "never echo input"
        assert_problem(await read(client, tenant, "/consultations", cursor=foreign_cursor), 400, "invalid-parameter")


async def test_a_key_of_one_business_is_forbidden_on_another_business_urls(settings, tenant, other_tenant, pool, keyring):
    async with api(settings) as client:
        theirs = await submit(client, other_tenant)
        await Projector(pool, keyring).sweep()
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


async def test_a_business_never_sees_another_business_rows(settings, tenant, other_tenant, pool, keyring):
    async with api(settings) as client:
        ours = await submit(client, tenant)
        theirs = await submit(client, other_tenant)  # the same customer and product ids, another business
        await Projector(pool, keyring).sweep()
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
