"""How the webhook loops keep up (docs/PERFORMANCE.md, outbound webhooks), against a real receiver on
127.0.0.1: claimed deliveries wait in the worker for a free slot without ever exceeding the
endpoint's concurrency, attempts are recorded in batches, a delivery held too long behind a hanging
endpoint is let go unsent until its lease runs out, and the fan-out wakes on new events."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from events.sqlfiles import queries
from projections import fanout
from service import webhooks
from service.webhooks import delivery_config
from tests.support.consults import submit
from tests.support.reads import api
from tests.support.receiver import Receiver, receiving
from tests.support.supervision import eventually
from tests.support.webhooks import business_id, compressed, delivering

CONCURRENCY = 8  # the default WEBHOOK_ENDPOINT_CONCURRENCY


class _Overlap:
    """Wraps the receiver's app: how many requests it was answering at once, at most."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver, self.now, self.most = receiver, 0, 0
        self.url = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await self.receiver(scope, receive, send)
        finally:
            self.now -= 1


async def attempts_by_event(db: asyncpg.Connection) -> dict[str, list[int | None]]:
    rows = await db.fetch("SELECT d.event_id::text AS event_id, array_agg(a.status_code ORDER BY a.attempt) AS codes "
                          "FROM webhook_deliveries d JOIN webhook_attempts a ON a.delivery_id = d.id "
                          "WHERE d.state = 'delivered' GROUP BY d.event_id")
    return {r["event_id"]: list(r["codes"]) for r in rows}


async def test_a_backlog_to_one_endpoint_arrives_once_each_never_beyond_its_concurrency_with_one_attempt_each(
        settings, tenant, db):
    fast = compressed(settings)
    receiver = Receiver(delay_s=0.05)  # slow enough that requests overlap
    overlap = _Overlap(receiver)
    async with receiving(overlap), api(fast) as client:
        receiver.url = overlap.url
        await webhooks.add_endpoint(db, fast, await business_id(db, "acme"), receiver.url + "/hooks",
                                    ["consult.submitted"])
        sent = [(await submit(client, tenant, customer_id=f"cus_{i}"))["event_id"] for i in range(30)]
        async with delivering(fast):  # the whole backlog is due at once: far more than the slots
            recorded = await eventually(lambda: _all_recorded(db, 30), 20, "30 attempts recorded")
    assert sorted(r.webhook_id for r in receiver.to("/hooks")) == sorted(sent)
    assert overlap.most == CONCURRENCY  # every slot used, and never one more
    assert recorded == {event_id: [200] for event_id in sent}


async def _all_recorded(db: asyncpg.Connection, count: int) -> dict[str, list[int | None]] | None:
    found = await attempts_by_event(db)
    return found if len(found) == count else None


async def test_a_delivery_held_too_long_behind_a_hanging_endpoint_is_sent_only_after_its_lease(settings, tenant, db):
    # A 300 ms request timeout: a delivery may wait 300 ms for a slot, and is leased for 2 × 0.3 + 5 s.
    fast = compressed(settings, webhook_timeout_ms=300)
    receiver = Receiver(lambda path, nth: None if nth <= CONCURRENCY else 200)  # the first CONCURRENCY hang
    async with receiving(receiver), api(fast) as client:
        await webhooks.add_endpoint(db, fast, await business_id(db, "acme"), receiver.url + "/slow",
                                    ["consult.submitted"])
        sent = [(await submit(client, tenant, customer_id=f"cus_{i}"))["event_id"] for i in range(2 * CONCURRENCY)]
        async with delivering(fast):  # one claim holds them all; half wait behind the hanging half
            recorded = await eventually(lambda: _all_recorded(db, len(sent)), 30, "every delivery")
    hung = [r.webhook_id for r in receiver.to("/slow")[:CONCURRENCY]]
    # Those that hung timed out and were retried; those behind them, held past 300 ms, were
    # let go unsent and sent once, when their lease had run out: never two requests for one at once.
    assert {event_id: codes for event_id, codes in recorded.items() if event_id in hung} == \
        {event_id: [None, 200] for event_id in hung}
    assert {event_id: codes for event_id, codes in recorded.items() if event_id not in hung} == \
        {event_id: [200] for event_id in sent if event_id not in hung}
    assert len(receiver.to("/slow")) == 3 * CONCURRENCY
    first = receiver.to("/slow")[0].at
    held = [r.at - first for r in receiver.to("/slow") if r.webhook_id not in hung]
    assert min(held) >= delivery_config(fast).lease_s - 1.0  # not at 0.3 s, when a slot freed


async def test_two_fan_outs_woken_by_appends_make_one_delivery_per_event_without_waiting_for_the_poll(
        settings, tenant, db, monkeypatch):
    monkeypatch.setattr(fanout, "POLL_S", 60.0)  # only the wake-up can be what finds the events in time
    fast = compressed(settings)
    async with api(fast) as client, asyncpg.create_pool(fast.database_url, min_size=1, max_size=4) as pool:
        await webhooks.add_endpoint(db, fast, await business_id(db, "acme"), "http://127.0.0.1:9/never",
                                    ["consult.submitted"])
        stop, fanned = asyncio.Event(), asyncio.Event()
        appended = [asyncio.Event(), asyncio.Event()]
        followers = [asyncio.create_task(fanout.follow(pool, stop, fanned, appended=a)) for a in appended]
        try:
            await eventually(lambda: db.fetchval("SELECT count(*) FROM webhook_cursor"), 20, "the cursor")
            sent = [(await submit(client, tenant, customer_id=f"cus_{i}"))["event_id"] for i in range(10)]
            for event in appended:
                event.set()  # as the worker's LISTEN connection does on the outbox notification
            rows = await eventually(lambda: _fanned(db, 10), 10, "ten delivery rows")
        finally:
            stop.set()
            await asyncio.gather(*followers, return_exceptions=True)
    assert sorted(rows) == sorted(sent)


async def _fanned(db: asyncpg.Connection, count: int) -> list[str] | None:
    rows = [r["event_id"] for r in await db.fetch("SELECT event_id::text AS event_id FROM webhook_deliveries")]
    return rows if len(rows) >= count else None


async def test_an_event_committed_behind_an_open_transaction_is_fanned_out_at_once_and_the_late_one_after_it(
        settings, tenant, db, database_url):
    fast = compressed(settings)
    acme = await business_id(db, "acme")
    async with api(fast) as client, asyncpg.create_pool(fast.database_url, min_size=1, max_size=2) as pool:
        await webhooks.add_endpoint(db, fast, acme, "http://127.0.0.1:9/never", ["consult.submitted"])
        await db.execute(queries("webhooks")["ensure_cursor"], fanout.CURSOR)
        late = await asyncpg.connect(database_url)
        try:
            async with late.transaction():  # an older transaction, holding the horizon back until it commits
                late_id = await late.fetchval(_LATE_EVENT, acme)
                sent = (await submit(client, tenant, customer_id="cus_early"))["event_id"]
                await fanout.fan_out_once(pool)
                early = await _fanned(db, 1)
                cursor_behind = await db.fetchval(
                    "SELECT c.tx_id < e.tx_id FROM webhook_cursor c, events e WHERE e.event_id = $1", sent)
            await fanout.fan_out_once(pool)
            await fanout.fan_out_once(pool)  # seeing the early event again makes no second row
        finally:
            await late.close()
        rows = await _fanned(db, 2)
    assert early == [sent]  # not held back by the older transaction still running
    assert cursor_behind  # the cursor did not pass what was not yet safe to pass
    assert sorted(rows) == sorted([sent, str(late_id)])  # nor was the late event skipped


_LATE_EVENT = """
INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, business_id, payload, metadata)
VALUES (gen_random_uuid(), 'consult-late', 1, 'consult.submitted', 1, $1, '{}', '{}') RETURNING event_id
"""
