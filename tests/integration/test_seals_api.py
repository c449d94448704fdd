"""The tamper-evidence endpoints: the newest seal and its public key for anyone, and an event's
inclusion proof for the business that owns it, which checks offline (events/proofs.py) against
the served key. Events are appended through the real API (the group commit's statement, chained
by the trigger)."""

from __future__ import annotations

import dataclasses

from events.proofs import check, decode
from events.sealing import seal
from events.seals import new_private_text, private_key, public_key
from tests.support.consults import submit
from tests.support.reads import api, assert_problem

PROOF = "/v1/businesses/{slug}/events/{event_id}/proof"


async def test_seal_key_and_proof_are_served_and_the_proof_holds_offline(db, settings, tenant):
    key = new_private_text()
    settings = dataclasses.replace(settings, seal_key=key)
    auth = {"Authorization": f"Bearer {tenant.key}"}
    async with api(settings) as client:
        assert_problem(await client.get("/v1/seals/latest"), 404, "not-found")
        accepted = await submit(client, tenant)
        event_id = await db.fetchval("SELECT event_id FROM events WHERE position = $1", accepted["position"])
        assert_problem(await client.get(PROOF.format(slug=tenant.slug, event_id=event_id), headers=auth),
                       409, "not-sealed")
        await submit(client, tenant, customer_id="cus_other")
        made = await seal(db, private_key(key))
        latest = (await client.get("/v1/seals/latest")).json()
        served_key = (await client.get("/v1/seals/public-key")).json()
        response = await client.get(PROOF.format(slug=tenant.slug, event_id=event_id), headers=auth)
    assert made is not None and (latest["seal"], latest["tree_size"]) == (1, 2)
    assert latest["root_hash"] == made.root_hash.hex() and served_key["key_id"] == made.key_id
    assert response.status_code == 200, response.text
    assert check(decode(response.content), public_key(served_key["public_key"])) == []
    assert response.json()["event"]["position"] == accepted["position"]


async def test_a_proof_is_only_for_the_business_that_owns_the_event(db, settings, tenant, other_tenant):
    settings = dataclasses.replace(settings, seal_key=new_private_text())
    async with api(settings) as client:
        accepted = await submit(client, tenant)
        event_id = await db.fetchval("SELECT event_id FROM events WHERE position = $1", accepted["position"])
        await seal(db, private_key(settings.seal_key))
        theirs = await client.get(PROOF.format(slug=other_tenant.slug, event_id=event_id),
                                  headers={"Authorization": f"Bearer {other_tenant.key}"})
        not_an_id = await client.get(PROOF.format(slug=tenant.slug, event_id="nope"),
                                     headers={"Authorization": f"Bearer {tenant.key}"})
        read_only = await client.get(PROOF.format(slug=tenant.slug, event_id=event_id),
                                     headers={"Authorization": f"Bearer {tenant.read_only_key}"})
    assert_problem(theirs, 404, "not-found")
    assert_problem(not_an_id, 404, "not-found")
    assert_problem(read_only, 403, "forbidden")


async def test_without_a_configured_key_the_public_key_is_not_found(settings):
    async with api(settings) as client:
        assert_problem(await client.get("/v1/seals/public-key"), 404, "not-found")
