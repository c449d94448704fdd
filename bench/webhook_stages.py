"""Where a webhook's commit→delivery time goes, stage by stage, so a slow p99 names its stage.

A watcher asks PostgreSQL every WATCH_INTERVAL_S which delivery rows have become visible (visible
= committed, to within one interval plus one query); the rest comes from what the run left behind.
Stages, per delivered event (wall clock, one machine):

- transaction: recorded_at (the appending transaction's start) → its commit; not part of
               commit→delivery, shown because a benchmark that measured from recorded_at would count it
- fan-out:     commit → its delivery row seen committed (projections/fanout.py)
- claim:       delivery row → claimed (the lease's start: next_attempt_at less the lease, which a
               successful first attempt leaves as it was)
- body:        claimed → the attempt's attempted_at (body built, a slot free, about to POST)
- send:        attempted_at → the receiver's arrival (the HTTP request itself)

and, after the delivery (not part of commit→delivery, but each of an endpoint's few slots is busy
for it before it takes the next delivery, so it sets how long deliveries queue for a slot):

- answer:      the receiver's arrival → the sender had the whole answer (attempted_at + latency_ms)
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from bench.measurement import percentile
from projections.deliveries import DeliveryConfig

WATCH_INTERVAL_S = 0.01
# Ids are handed out before commit, so a row committing late below the highest id seen is looked
# for again. Delivery rows are inserted only by the fan-out, one statement at a time under the
# cursor's lock, so they commit in id order and a small margin is plenty; the 2,000 rows this was
# re-read every 10 ms, decoded in the process that also hosts the receiver and the load generator,
# cost the 2-core machine being measured (docs/PERFORMANCE.md).
LOOK_BACK = 100
STAGES = ("transaction", "fan-out", "claim", "body", "send")
LEASE_S = DeliveryConfig().lease_s  # the bench leaves WEBHOOK_TIMEOUT_MS at its default
ATTEMPTS_SQL = """
SELECT d.event_id::text AS id, extract(epoch FROM a.attempted_at)::float8 AS attempted,
       extract(epoch FROM d.next_attempt_at)::float8 - $2 AS claimed, a.latency_ms / 1000.0 AS latency
FROM webhook_deliveries d JOIN webhook_attempts a ON a.delivery_id = d.id AND a.attempt = 1
WHERE d.event_id::text = ANY ($1::text[]) AND d.state = 'delivered' AND d.attempts = 1
"""


class StageWatcher:
    """Notes when delivery rows first become visible, until stopped."""

    def __init__(self) -> None:
        self.fanned: dict[str, float] = {}
        self._stop = asyncio.Event()

    async def watch(self, url: str) -> None:
        conn = await asyncpg.connect(url)
        try:
            last = await conn.fetchval("SELECT coalesce(max(id), 0) FROM webhook_deliveries")
            while not self._stop.is_set():
                rows = await conn.fetch("SELECT id, event_id::text AS event FROM webhook_deliveries WHERE id > $1",
                                        last - LOOK_BACK)
                seen = time.time()
                for row in rows:
                    self.fanned.setdefault(row["event"], seen)
                last = max([last, *(r["id"] for r in rows)])
                await asyncio.sleep(WATCH_INTERVAL_S)
        finally:
            await conn.close()

    def stop(self) -> None:
        self._stop.set()


async def stage_delays(conn: asyncpg.Connection, watcher: StageWatcher, events: dict[str, tuple[float, float]],
                       arrivals: dict[str, float]) -> dict[str, tuple[float, float]]:
    """(p50 ms, p99 ms) of each stage; `events`: id → (recorded_at, committed) in epoch seconds."""
    rows = await conn.fetch(ATTEMPTS_SQL, list(events), LEASE_S)
    attempts = {r["id"]: (r["claimed"], r["attempted"]) for r in rows}
    answered = {r["id"]: r["attempted"] + float(r["latency"]) for r in rows}
    marks = [(*events[i], watcher.fanned[i], *attempts[i], arrivals[i], answered[i])
             for i in events if i in watcher.fanned and i in attempts and i in arrivals]
    if not marks:
        return {}
    spans = {stage: [m[n + 1] - m[n] for m in marks] for n, stage in enumerate((*STAGES, "answer"))}
    return {stage: (percentile(spans[stage], 50), percentile(spans[stage], 99)) for stage in spans}
