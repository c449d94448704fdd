"""The outbox relay: hands committed outbox rows to arq, a job per batch, then deletes them.

Rows are claimed with FOR UPDATE SKIP LOCKED, so several relays can run. A
row is deleted only in the transaction that claimed it and only after its job
is in Redis; if Redis is down the rows stay (deferred with backoff) and
ingestion is unaffected. Job ids make a duplicate enqueue harmless, and jobs
carry stream ids only: the projector reads the events from the log.

`Relay.run` and `listen` are two loops, each run under the worker's supervisor
(service/loops.py), which restarts whichever fails; each reports its healthy
iterations through the `healthy` callback it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg
import redis.exceptions
import structlog
from arq.connections import ArqRedis

from events.errors import StoreUnavailable, translating_driver_errors
from events.sqlfiles import queries

CHANNEL = "intake_outbox"
# Small on purpose: a batch's rows are deleted only when its transaction commits,
# so a relay killed mid-batch loses (and re-enqueues, harmlessly) at most this much
# work; with 500, workers SIGKILLed every ~2 s never finished a batch at all.
BATCH = 50
GATHER_S = 0.01  # at most one partial batch per this long: batches grow with the load
POLL_INTERVAL_S = 1.0  # the fallback when a notification is missed (or the listener is reconnecting)
RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 5.0
JOB = "project_streams"
_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
_log = structlog.get_logger("intake.relay")


def _nobody() -> None:
    """The default `healthy` callback: nobody is watching."""


def job_id(positions: list[int]) -> str:
    """One job per claimed batch, named by its positions: re-enqueueing the same rows is a no-op
    (and a job for rows already applied finds nothing to do)."""
    return f"project:{min(positions)}-{max(positions)}:{len(positions)}"


class Relay:
    """Drains the outbox into arq; `run()` until `stop` is set."""

    def __init__(self, pool: asyncpg.Pool, redis_pool: ArqRedis, wake: asyncio.Event | None = None) -> None:
        self._pool = pool
        self._redis = redis_pool
        self._wake = wake or asyncio.Event()  # set by `listen` (run separately, and supervised on its own)
        self._sql = queries("projections")

    async def run(self, stop: asyncio.Event, healthy: Callable[[], None] = _nobody) -> None:
        """Relay on every wake-up, and at least every POLL_INTERVAL_S, until `stop` is set.

        Anything but a database outage propagates: the caller's supervisor logs and restarts."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_INTERVAL_S)
            self._wake.clear()
            try:
                while (relayed := await self.relay_once()) == BATCH:
                    pass  # a full batch: there is probably more
            except StoreUnavailable:
                _log.warning("relay.database_unavailable")
                continue
            healthy()  # with Redis down too: the rows are kept, which is this loop's job then
            if relayed:
                # A lone event went out at once; under a steady stream, let the next batch
                # gather for a moment: far fewer relay and projector transactions per event.
                await asyncio.sleep(GATHER_S)

    async def relay_once(self) -> int:
        """Move one batch from the outbox to Redis; returns rows relayed (0 if Redis is down)."""
        with translating_driver_errors():
            async with self._pool.acquire(timeout=5) as conn, conn.transaction():
                rows = await conn.fetch(self._sql["claim_outbox"], BATCH)
                if not rows:
                    return 0
                positions = [row["position"] for row in rows]
                streams = sorted({row["stream_id"] for row in rows})
                try:
                    # One job for the whole batch: the projector applies it in one transaction.
                    queued = await self._redis.enqueue_job(JOB, *streams, _job_id=job_id(positions))
                except _REDIS_DOWN as error:
                    await conn.execute(self._sql["defer_outbox"], positions)
                    _log.warning("relay.redis_unavailable", rows=len(rows), error=type(error).__name__)
                    return 0
                await conn.execute(self._sql["delete_outbox"], positions)
        if queued is None:  # the same rows' job is still queued: relayed before, the delete was lost
            _log.info("outbox.already_queued", rows=len(rows))
        _log.debug("outbox.relayed", rows=len(rows), streams=len(streams))
        return len(rows)


async def listen(database_url: str, wake: asyncio.Event, stop: asyncio.Event,
                 healthy: Callable[[], None] = _nobody) -> None:
    """A dedicated LISTEN connection that sets `wake` on every notification and reconnects by
    itself with backoff; anything but a connection failure propagates to the caller's supervisor."""
    delay = RECONNECT_MIN_S
    while not stop.is_set():
        conn = None
        try:
            conn = await asyncpg.connect(database_url, timeout=5)
            await conn.add_listener(CHANNEL, lambda *_: wake.set())
            delay = RECONNECT_MIN_S
            wake.set()  # catch up on anything committed while not listening
            while not stop.is_set() and not conn.is_closed():
                healthy()
                await asyncio.sleep(0.5)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
            _log.warning("relay.listener_reconnecting", error=type(error).__name__, retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)  # a float that stops doubling at the cap: no overflow
        finally:
            if conn is not None:
                with contextlib.suppress(OSError, asyncpg.InterfaceError):
                    await conn.close(timeout=1)
