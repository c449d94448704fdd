"""The webhooks' follower of the log: a delivery row for every event an endpoint subscribes to.

Its cursor (`webhook_cursor`) moves like the projectors' sweep reads: only through transactions
below the snapshot's xmin, in (tx_id, position) order, so an event whose transaction commits late
is never passed over, and a crash anywhere resumes at the committed cursor. Deliveries do not wait
for that: every committed event after the cursor gets its rows at once, even while an older
transaction still runs (sql/queries/webhooks.sql `fan_out`), and is seen again by each scan until
the cursor passes it; the rows' unique (endpoint, event) makes a repeated scan harmless. The
delivery rows and the cursor move in one transaction. Redis plays no part: a wiped Redis loses
nothing here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from events.errors import translating_driver_errors
from events.sqlfiles import queries

CURSOR = "deliveries"
BATCH = 500
# Without a notification (or when one comes before older transactions have ended, which the scan
# must wait for): the cost of an idle poll is one index probe; it bounds the commit→delivery delay.
POLL_S = 0.05


def _nobody() -> None:
    """The default `healthy` callback: nobody is watching."""


async def fan_out_once(db: asyncpg.Pool | asyncpg.Connection, *, batch: int = BATCH) -> tuple[int, int]:
    """One step of the cursor: (events it passed, deliveries created); (0, 0) if another worker is
    taking one. The cursor row must exist (`follow` makes it)."""
    with translating_driver_errors():
        found = await db.fetchrow(queries("webhooks")["fan_out"], CURSOR, batch)
    return found["scanned"], found["fanned"]


async def follow(pool: asyncpg.Pool, stop: asyncio.Event, fanned: asyncio.Event,
                 healthy: Callable[[], None] = _nobody, *, appended: asyncio.Event | None = None) -> None:
    """Fan out until `stop`; sets `fanned` whenever new deliveries exist, to wake the sender.
    `appended` (the outbox notification, when the caller listens for it) wakes it before the poll."""
    appended = appended or asyncio.Event()
    # One connection for the loop's life: no acquire, and no reset round trip on release, per step.
    # A connection that breaks ends the loop, and its supervisor starts it again with a new one.
    with translating_driver_errors():
        async with pool.acquire(timeout=5) as conn:
            await conn.execute(queries("webhooks")["relaxed_commit"])  # undone on release (the pool's reset)
            await conn.execute(queries("webhooks")["ensure_cursor"], CURSOR)
            while not stop.is_set():
                appended.clear()  # before the scan: whatever commits during it wakes the next wait at once
                scanned, created = await fan_out_once(conn)
                if created:
                    fanned.set()
                healthy()
                if scanned < BATCH:
                    await _first_of(stop, appended, timeout_s=POLL_S)


async def _first_of(*events: asyncio.Event, timeout_s: float) -> None:
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
