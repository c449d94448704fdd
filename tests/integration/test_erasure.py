"""Forgetting a patient (crypto-shredding) against real PostgreSQL: afterwards no table or view holds
the patient's name, email or date of birth in any readable form, while replay, rebuild + verify, the
history endpoint and the read API keep working for every event; other patients are untouched, and
the same customer submitting again gets a new key and is readable."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from projections.projector import PROJECTIONS, Projector
from projections.rebuild import rebuild
from projections.verify import verify
from service import admin
from tests.support.consults import decide, submit
from tests.support.payloads import decision, headers
from tests.support.privacy import intake, patient, tables_containing
from tests.support.reads import api, assert_problem, ok, read
from tests.support.replay import replay_jsonl

FORGET = "/v1/businesses/{slug}/patients/forget"
PERSONAL = ("patient", "chief_complaint", "medical_history", "answers")


@pytest.fixture
async def admin_key(db: asyncpg.Connection) -> str:
    return (await admin.create_key(db, business=None, scopes=[], admin=True)).key


@pytest.fixture
async def pool(database_url: str):
    async with asyncpg.create_pool(database_url, min_size=1, max_size=4) as pool:
        yield pool


def secrets() -> tuple[str, str, str]:
    """A last name, email and date of birth found nowhere else in the database."""
    tag = uuid.uuid4().hex[:10]
    return f"Quillfeather{tag}", f"zq.{tag}@example.org", "1961-07-23"


async def test_after_forget_nothing_readable_remains_and_every_reader_still_works(settings, tenant, db, pool,
                                                                                  keyring):
    last, email, born = secrets()
    async with api(settings) as client:
        first = await submit(client, tenant, customer_id="cus_forget",
                             patient=patient("Zenobia", last, email, born), chief_complaint=f"Rash, says {last}")
        assert (await decide(client, "acme", first["consultation_id"], decision(), tenant.key)).status_code == 200
        await submit(client, tenant, customer_id="cus_forget", product_id="prod_two",
                     patient=patient("Zenobia", last, email, born))
        await submit(client, tenant, customer_id="cus_keep", patient=patient("Barnaby", "Oakenshield",
                                                                              "b.oak@example.org", "1980-02-02"))
        await Projector(pool, keyring).sweep()
        # At rest the log holds ciphertext already: only the read model shows the patient.
        assert await tables_containing(db, last) == {"public.patients"}
        assert await tables_containing(db, email) == {"public.patients"}

        done = await intake(settings, "patients", "forget", "--business", "acme", "--customer", "cus_forget",
                            "--reason", "erasure request 42")
        assert done.returncode == 0 and "forgot patient" in done.stdout and "destroyed 1 data key" in done.stdout
        for needle in (last, email, born, "Zenobia"):  # at once: forget erased the read model too
            assert await tables_containing(db, needle) == set(), needle
        assert all(verdict.equal for verdict in await verify(db, list(PROJECTIONS), keyring))  # no worker needed
        await Projector(pool, keyring).sweep()  # and the projector, applying the event later, agrees
        for needle in (last, email, born, "Zenobia"):
            assert await tables_containing(db, needle) == set(), needle
        assert await tables_containing(db, "Oakenshield") == {"public.patients"}  # others untouched

        history = await ok(read(client, tenant, f"/consultations/{first['consultation_id']}/history", key=tenant.key))
        assert [e["type"] for e in history] == ["consult.submitted.v2", "consult.decided.v1"]
        assert all(history[0]["data"][field] == "[erased]" for field in PERSONAL)
        assert history[0]["data"]["customer_id"] == "cus_forget" and history[1]["data"]["decision"] == "approved"
        erased = await ok(read(client, tenant, f"/patients/{history[0]['data']['patient_id']}"))
        assert (erased["erased"], erased["first_name"], erased["email"], erased["date_of_birth"]) == (
            True, "[erased]", "[erased]", None)

    events = await replay_jsonl(settings.database_url, "--business", "acme")
    submitted = {e["data"]["customer_id"]: e["data"] for e in events if e["type"] == "consult.submitted"}
    assert all(submitted["cus_forget"][field] == "[erased]" for field in PERSONAL)
    assert submitted["cus_keep"]["patient"]["last_name"] == "Oakenshield"
    [forgotten] = [e for e in events if e["type"] == "patient.forgotten"]
    assert forgotten["data"]["reason"] == "erasure request 42" and forgotten["metadata"]["actor"].startswith("cli:")

    await rebuild(settings.owner_database_url, list(PROJECTIONS), keyring)
    assert all(verdict.equal for verdict in await verify(db, list(PROJECTIONS), keyring))
    for needle in (last, email, born):
        assert await tables_containing(db, needle) == set(), needle


async def test_the_same_customer_submitting_after_forget_gets_a_new_key_and_is_readable(settings, tenant, db,
                                                                                        pool, keyring, admin_key):
    last, email, born = secrets()
    async with api(settings) as client:
        await submit(client, tenant, customer_id="cus_back", patient=patient("Old", last, email, born))
        forgot = await client.post(FORGET.format(slug="acme"), json={"customer_id": "cus_back", "reason": "asked"},
                                   headers=headers(admin_key))
        assert forgot.status_code == 200, forgot.text
        again = await submit(client, tenant, customer_id="cus_back", product_id="prod_new",
                             patient=patient("New", "Returner", "new@example.org", "1999-09-09"))
        await Projector(pool, keyring).sweep()
        history = await ok(read(client, tenant, f"/consultations/{again['consultation_id']}/history", key=tenant.key))
        person = await ok(read(client, tenant, f"/patients/{history[0]['data']['patient_id']}"))
    assert history[0]["data"]["patient"]["first_name"] == "New"
    assert (person["erased"], person["first_name"], person["date_of_birth"]) == (False, "New", "1999-09-09")
    keys = await db.fetch("SELECT destroyed_at IS NULL AS live FROM patient_keys WHERE patient_id = $1",
                          uuid.UUID(person["patient_id"]))
    assert sorted(k["live"] for k in keys) == [False, True]  # the old key destroyed, a new one live
    assert await tables_containing(db, last) == set()


async def test_forgetting_twice_is_a_no_op_and_only_admin_keys_may_forget(settings, tenant, db, admin_key):
    async with api(settings) as client:
        await submit(client, tenant, customer_id="cus_twice")
        body = {"customer_id": "cus_twice", "reason": "asked twice"}
        first = await client.post(FORGET.format(slug="acme"), json=body, headers=headers(admin_key))
        second = await client.post(FORGET.format(slug="acme"), json=body, headers=headers(admin_key))
        unknown = await client.post(FORGET.format(slug="acme"), json={**body, "customer_id": "cus_never"},
                                    headers=headers(admin_key))
        not_admin = await client.post(FORGET.format(slug="acme"), json=body, headers=headers(tenant.key))
        no_reason = await client.post(FORGET.format(slug="acme"), json={"customer_id": "cus_twice"},
                                      headers=headers(admin_key))
    assert first.status_code == 200 and first.json()["destroyed_keys"] == 1 and not first.json()["already_forgotten"]
    assert second.status_code == 200 and second.json() == {**first.json(), "already_forgotten": True,
                                                           "destroyed_keys": 0, "position": None}
    assert_problem(unknown, 404, "not-found")
    assert_problem(not_admin, 403, "forbidden")
    assert any(e["field"] == "reason" for e in assert_problem(no_reason, 422, "validation-failed")["errors"])
    assert await db.fetchval("SELECT count(*) FROM events WHERE event_type = 'patient.forgotten'") == 1
    done = await intake(settings, "patients", "forget", "--business", "acme", "--customer", "cus_twice")
    assert done.returncode == 0 and "already forgotten" in done.stdout
    missing = await intake(settings, "patients", "forget", "--business", "acme", "--customer", "cus_never")
    assert missing.returncode == 1 and "no patient" in missing.stderr and "Traceback" not in missing.stderr
