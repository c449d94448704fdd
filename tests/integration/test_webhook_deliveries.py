"""Outbound webhooks against a real receiver the test starts on 127.0.0.1: signed, retried with
the same webhook-id, every attempt recorded, dead-lettered and redelivered, and one endpoint's
hang never holding back another business's."""

from __future__ import annotations

import json
import time

import asyncpg
import httpx

from projections import signatures
from service import webhooks
from service.webhooks import delivery_config
from tests.support.consults import decide, submit
from tests.support.payloads import decision
from tests.support.reads import api
from tests.support.receiver import Receiver, receiving
from tests.support.supervision import eventually
from tests.support.webhooks import business_id, compressed, delivering, intake_cli


async def approve(client: httpx.AsyncClient, tenant, customer_id: str = "cus_1") -> dict:
    """Submit and approve a consultation; the decision's answer."""
    consult = await submit(client, tenant, customer_id=customer_id)
    verdict = await decide(client, tenant.slug, consult["consultation_id"], decision("approved"), tenant.key)
    assert verdict.status_code == 200, verdict.text
    return verdict.json()


async def states(db: asyncpg.Connection) -> list[str]:
    return [r["state"] for r in await db.fetch("SELECT state FROM webhook_deliveries ORDER BY id")]


async def test_a_receiver_failing_three_times_gets_one_webhook_id_four_times_and_the_attempts_are_listed(
        settings, tenant, db):
    fast = compressed(settings)
    receiver = Receiver(lambda path, nth: 500 if nth <= 3 else 200)
    async with receiving(receiver), api(fast) as client:
        acme = await business_id(db, "acme")
        hook = await webhooks.add_endpoint(db, fast, acme, receiver.url + "/fees", ["consult.approved"])
        async with delivering(fast):
            verdict = await approve(client, tenant)
            await eventually(lambda: _delivered(db), 20, "the delivery to settle")
    got = receiver.to("/fees")
    assert len(got) == 4 and {r.webhook_id for r in got} == {verdict["event_id"]}
    key = signatures.secret_key(hook.secret)
    for request in got:
        signatures.verify([key], request.webhook_id, request.headers["webhook-timestamp"],
                          request.headers["webhook-signature"], request.body, now=int(request.at))
    body = got[-1].json()
    assert body["type"] == "consult.approved"
    assert (body["data"]["consultation_id"], body["data"]["customer_id"]) == (verdict["consultation_id"], "cus_1")
    for personal in (b"Lovelace", b"first_name", b"email", b"chief_complaint", b"reason"):
        assert personal not in got[-1].body
    [listed] = await webhooks.deliveries(db, acme, failed=False)
    assert (listed["state"], str(listed["event_id"])) == ("delivered", verdict["event_id"])
    assert [a["status_code"] for a in listed["attempts"]] == [500, 500, 500, 200]
    assert all(a["next_attempt_at"] is not None for a in listed["attempts"][:3])


async def _delivered(db: asyncpg.Connection) -> bool:
    return await states(db) == ["delivered"]


async def test_an_always_failing_receiver_is_dead_lettered_after_the_schedule_and_redeliver_sends_again(
        settings, tenant, db):
    fast = compressed(settings)
    failing = {"on": True}
    receiver = Receiver(lambda path, nth: 503 if failing["on"] else 200)
    async with receiving(receiver), api(fast) as client:
        acme = await business_id(db, "acme")
        await webhooks.add_endpoint(db, fast, acme, receiver.url + "/hooks", ["consult.submitted"])
        async with delivering(fast):
            sent = await submit(client, tenant)
            await eventually(lambda: _dead(db), 20, "the delivery to be dead-lettered")
            listed = await intake_cli(fast, "webhooks", "deliveries", "--failed", "--business", "acme", "--json")
            [dead] = [json.loads(line) for line in listed.stdout.splitlines()]
            assert dead["state"] == "dead" and [a["status_code"] for a in dead["attempts"]] == [503] * 4
            assert dead["attempts"][-1]["next_attempt_at"] is None
            failing["on"] = False
            again = await intake_cli(fast, "webhooks", "redeliver", str(dead["id"]))
            assert again.returncode == 0 and again.stdout.strip() == f"queued 1 delivery(ies) again: {dead['id']}"
            await eventually(lambda: _delivered(db), 20, "the redelivery")
    got = receiver.to("/hooks")
    assert len(got) == 5 and {r.webhook_id for r in got} == {sent["event_id"]}
    [again] = await webhooks.deliveries(db, acme, failed=False)
    assert [a["status_code"] for a in again["attempts"]] == [503, 503, 503, 503, 200]
    assert await webhooks.deliveries(db, acme, failed=True) == []


async def _dead(db: asyncpg.Connection) -> bool:
    return await states(db) == ["dead"]


async def test_an_endpoint_that_hangs_does_not_delay_another_business_s_endpoint(settings, tenant, other_tenant, db):
    fast = compressed(settings, webhook_timeout_ms=5000)
    slots = delivery_config(fast).endpoint_concurrency
    receiver = Receiver(lambda path, nth: None if path == "/hangs" else 200)
    async with receiving(receiver), api(fast) as client:
        await webhooks.add_endpoint(db, fast, await business_id(db, "acme"), receiver.url + "/hangs",
                                    ["consult.submitted"])
        await webhooks.add_endpoint(db, fast, await business_id(db, "globex"), receiver.url + "/fine",
                                    ["consult.submitted"])
        async with delivering(fast):
            for i in range(3 * slots):  # three times the per-endpoint concurrency, all hanging
                await submit(client, tenant, customer_id=f"cus_{i}")
            await eventually(lambda: len(receiver.to("/hangs")) >= slots, 20, "the hanging endpoint to be called")
            committed = time.time()
            await submit(client, other_tenant, customer_id="cus_other")
            [fine] = await eventually(lambda: receiver.to("/fine"), 20, "the other business's delivery")
    assert fine.at - committed < 2.0  # well inside the 5 s that each hanging request holds its slot
    assert len(receiver.to("/hangs")) == slots  # only its own slots were held
