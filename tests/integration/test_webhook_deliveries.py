"""Outbound webhooks against a real receiver the test starts on 127.0.0.1: signed, retried with
the same webhook-id, every attempt recorded, dead-lettered and redelivered, and one endpoint's
hang never holding back another business's; an event that cannot be read dead-lettered at once."""

from __future__ import annotations

import json
import time
import uuid

import asyncpg
import httpx
import pytest

from events.sqlfiles import queries
from projections import signatures
from projections.fanout import CURSOR, fan_out_once
from service import webhooks
from service.webhooks import delivery_config
from tests.support.consults import decide, submit
from tests.support.integrity import as_attacker
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


# As a superuser could, the append-only trigger lifted: a required field taken out of an event's
# payload, or the event taken out of the log; and the attempt each delivery's record then shows.
_DAMAGE = {"invalid": ("UPDATE events SET payload = payload - 'submission_id' WHERE event_id = $1",
                       "event {} cannot be decoded: ValidationError"),
           "missing": ("DELETE FROM events WHERE event_id = $1", "event {} was not found")}


@pytest.mark.parametrize("damage", sorted(_DAMAGE))
async def test_an_event_that_cannot_be_read_is_dead_lettered_at_once_and_the_others_are_delivered(
        settings, tenant, db, damage):
    fast = compressed(settings)
    receiver = Receiver(lambda path, nth: 200)
    statement, error = _DAMAGE[damage]
    async with receiving(receiver), api(fast) as client:
        acme = await business_id(db, "acme")
        await webhooks.add_endpoint(db, fast, acme, receiver.url + "/hooks", ["consult.submitted"])
        broken = await submit(client, tenant, customer_id="cus_broken")
        fine = await submit(client, tenant, customer_id="cus_fine")
        await db.execute(queries("webhooks")["ensure_cursor"], CURSOR)
        await fan_out_once(db)  # both deliveries exist before the damage
        await _rewrite(db, statement, uuid.UUID(broken["event_id"]))
        async with delivering(fast):
            await eventually(lambda: _settled(db), 20, "both deliveries to settle")
    assert [r.webhook_id for r in receiver.to("/hooks")] == [fine["event_id"]]
    [dead] = await webhooks.deliveries(db, acme, failed=True)
    assert (str(dead["event_id"]), dead["state"]) == (broken["event_id"], "dead")
    [attempt] = dead["attempts"]  # one attempt: trying again cannot help
    assert (attempt["status_code"], attempt["error"]) == (None, error.format(broken["event_id"]))


async def _settled(db: asyncpg.Connection) -> bool:
    return sorted(await states(db)) == ["dead", "delivered"]


async def test_an_unreadable_event_s_delivery_once_repaired_is_sent_by_redeliver(settings, tenant, db):
    fast = compressed(settings)
    receiver = Receiver(lambda path, nth: 200)
    async with receiving(receiver), api(fast) as client:
        acme = await business_id(db, "acme")
        await webhooks.add_endpoint(db, fast, acme, receiver.url + "/hooks", ["consult.submitted"])
        sent = await submit(client, tenant)
        event_id = uuid.UUID(sent["event_id"])
        original = await db.fetchval("SELECT payload::text FROM events WHERE event_id = $1", event_id)
        await _rewrite(db, _DAMAGE["invalid"][0], event_id)
        async with delivering(fast):
            await eventually(lambda: _dead(db), 20, "the delivery to be dead-lettered")
            await _rewrite(db, "UPDATE events SET payload = $2::jsonb WHERE event_id = $1", event_id, original)
            [dead] = await webhooks.deliveries(db, acme, failed=True)
            again = await intake_cli(fast, "webhooks", "redeliver", str(dead["id"]))
            assert again.returncode == 0, again.stderr
            await eventually(lambda: _delivered(db), 20, "the redelivery")
    assert [r.webhook_id for r in receiver.to("/hooks")] == [sent["event_id"]]
    [listed] = await webhooks.deliveries(db, acme, failed=False)
    assert [(a["status_code"], a["error"]) for a in listed["attempts"]] == [
        (None, f"event {event_id} cannot be decoded: ValidationError"), (200, None)]


async def _rewrite(db: asyncpg.Connection, statement: str, *args: object) -> None:
    """`statement` on the log as an attacker would run it, its protections off for that transaction only."""
    async with as_attacker(db):
        await db.execute(statement, *args)
