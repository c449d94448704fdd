"""The event log itself: append-only, optimistic concurrency, a global reader that never skips."""

from __future__ import annotations

import asyncio
import random
import uuid

import asyncpg
import pytest

from events.errors import AppendConflict
from events.store import EventStore
from tests.support.event_log import META, append, decided


@pytest.fixture
async def pool(database_url):
    async with asyncpg.create_pool(database_url, min_size=2, max_size=30) as pool:
        yield pool


@pytest.mark.parametrize("statement", [
    "UPDATE events SET stream_id = 'x'",
    "DELETE FROM events",
    "TRUNCATE events",
    "TRUNCATE events CASCADE",
])
async def test_the_database_refuses_to_change_or_remove_events(pool, statement, keyring):
    await append(EventStore(pool, keyring), "s-1", 0)
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute(statement)
        # Even a superuser session in replica mode, which skips ordinary triggers.
        await conn.execute("SET session_replication_role = replica")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM events") == 1


async def test_appending_after_a_stale_version_conflicts_and_writes_nothing(pool, keyring):
    store = EventStore(pool, keyring)
    await append(store, "s-1", 0)
    with pytest.raises(AppendConflict):
        await append(store, "s-1", 0)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM events") == 1
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 1


async def test_a_losing_request_in_a_shared_commit_does_not_abort_the_winners(pool, keyring):
    store = EventStore(pool, keyring)
    results = await asyncio.gather(*(append(store, "hot", 0) for _ in range(10)),
                                   *(append(store, f"cold-{i}", 0) for i in range(10)), return_exceptions=True)
    conflicts = [r for r in results[:10] if isinstance(r, AppendConflict)]
    assert len(conflicts) == 9
    assert all(isinstance(r, int) for r in results[10:])
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM events") == 11
        assert await conn.fetchval("SELECT count(*) FROM events e LEFT JOIN outbox o USING (position) "
                                   "WHERE o.position IS NULL") == 0


async def _no_fault(point: str) -> None:
    return None


# Without a fault point each batch is one statement, its own transaction (the service's way); with
# one, the statement runs in an explicit transaction (drills). Either way a request whose events
# could only partly be inserted writes none of them, and the requests sharing its batch commit.
@pytest.mark.parametrize("fault", [None, _no_fault], ids=["one-statement", "explicit-transaction"])
async def test_a_request_that_could_only_partly_be_inserted_writes_nothing_and_its_batch_commits(
        pool, keyring, fault):
    store = EventStore(pool, keyring, fault=fault)
    await append(store, "mixed", 0)  # version 1 is taken: of the request below, only version 2 would fit
    both = store.append(stream_id="mixed", expected_version=0, events=[(uuid.uuid4(), decided(1)),
                        (uuid.uuid4(), decided(2))], business_id=1, metadata=META, idempotency=None)
    results = await asyncio.gather(both, append(store, "bystander", 0), return_exceptions=True)
    assert isinstance(results[0], AppendConflict) and isinstance(results[1], int), results
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT stream_id, stream_version FROM events ORDER BY position")
        assert [tuple(r) for r in rows] == [("mixed", 1), ("bystander", 1)]
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 2


async def test_global_reader_waits_for_a_lower_position_that_commits_later(pool, database_url, keyring):
    """The trap a position-ordered reader falls into: position 1 commits after position 2."""
    store = EventStore(pool, keyring)
    slow = await asyncpg.connect(database_url)
    try:
        tx = slow.transaction()
        await tx.start()
        await slow.execute("SELECT pg_current_xact_id()")  # as the store does: xid first
        low = await slow.fetchval(
            "INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, business_id, "
            "payload, metadata) VALUES ($1, 'slow', 1, 'consult.decided', 1, 1, $2, '{}') RETURNING position",
            uuid.uuid4(), '{"type":"consult.decided.v1","consultation_id":"%s","decision":"approved",'
            '"reason":"r","clinician_id":"c","decided_at":"2026-01-01T00:00:00Z"}' % uuid.uuid4())
        high = await append(store, "fast", 0)
        assert low < high
        async with pool.acquire() as conn:  # the naive reader really would have skipped `low`
            naive = await conn.fetch("SELECT position FROM events WHERE position > 0 ORDER BY position")
        assert [r["position"] for r in naive] == [high]
        assert await store.read_all(after=0, limit=10) == []  # ours waits instead
        await tx.commit()
    finally:
        await slow.close()
    assert [e.position for e in await store.read_all(after=0, limit=10)] == [low, high]


async def test_global_reader_following_positions_sees_every_event_exactly_once(pool, keyring):
    """Concurrent appenders whose commits are delayed at random; a follower reads in small pages."""
    rng = random.Random(7)

    async def delayed_commit(point: str) -> None:
        if point == "append.before_commit":
            await asyncio.sleep(rng.random() * 0.03)

    stores = [EventStore(pool, keyring, fault=delayed_commit) for _ in range(4)]  # four independent committers
    appenders_done = asyncio.Event()
    seen: list[int] = []

    async def appender(n: int) -> None:
        for i in range(40):
            await append(stores[n % 4], f"stream-{n}", i)

    async def follower() -> None:
        after = 0
        while True:
            finished = appenders_done.is_set()
            page = await stores[0].read_all(after=after, limit=7)
            seen.extend(e.position for e in page)
            after = page[-1].position if page else after
            if finished and not page:
                return
            if not page:
                await asyncio.sleep(0.005)

    reader = asyncio.create_task(follower())
    await asyncio.gather(*(appender(n) for n in range(12)))
    appenders_done.set()
    await asyncio.wait_for(reader, timeout=30)
    async with pool.acquire() as conn:
        committed = [r["position"] for r in await conn.fetch("SELECT position FROM events")]
    assert len(committed) == 12 * 40
    twice = sorted({p for p in seen if seen.count(p) > 1})
    assert not twice, f"delivered twice: {twice[:10]}"
    assert sorted(seen) == sorted(committed), "an event was skipped"


async def test_global_reader_orders_transaction_ids_as_numbers_not_text(pool, keyring):
    """Regression: ordering by a text alias of tx_id put xid 10 before xid 9 and repeated pages."""
    async with pool.acquire() as conn:
        for tx_id, stream in (("9", "a"), ("10", "b"), ("11", "c")):  # long finished: below any horizon
            await conn.execute(
                "INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, business_id, "
                "payload, metadata, tx_id) VALUES ($1, $2, 1, 'consult.decided', 1, 1, $3, '{}', $4::text::xid8)",
                uuid.uuid4(), stream, '{"type":"consult.decided.v1","consultation_id":"%s","decision":"approved",'
                '"reason":"r","clinician_id":"c","decided_at":"2026-01-01T00:00:00Z"}' % uuid.uuid4(), tx_id)
    store = EventStore(pool, keyring)
    seen, after = [], 0
    while page := await store.read_all(after=after, limit=1):
        seen.append(page[0].stream_id)
        after = page[0].position
        assert len(seen) <= 3, f"the reader went back: {seen}"
    assert seen == ["a", "b", "c"]
