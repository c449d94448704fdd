"""The webhooks' sender: claims due deliveries and POSTs them, signed, recording every attempt.

Isolation: each worker keeps at most `endpoint_concurrency` requests in flight per endpoint and
`max_in_flight` in all, and every request is bounded by `timeout_s` (the whole exchange, not
each read), so an endpoint that hangs holds only its own slots, for at most the timeout, and the
claim skips it while they are full: other endpoints' deliveries keep going. Redirects are not
followed (the requests themselves: projections/webhook_requests.py).

A delivery whose body cannot be built from the log (an event of a type or version this code does
not know, a payload that fails validation, an event missing from the log) is dead-lettered at its
first attempt, which names the event and the error's type: trying again cannot help, and
`redeliver` sends it once the cause is fixed.

A delivery is leased when claimed (its next attempt pushed past the timeout), so a worker killed
mid-request leaves it to be retried when the lease runs out: at least once, with the same
webhook-id (the event id), which is what lets a receiver stay idempotent.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import ipaddress
import time
from collections import Counter
from collections.abc import Callable

import aiohttp
import asyncpg
import structlog

from events.errors import translating_driver_errors
from events.sqlfiles import queries
from events.store import UNREADABLE, decode_record
from events.types import StoredEvent
from projections import webhook_bodies, webhook_policy, webhook_requests
from projections.secretbox import SecretBox
from projections.webhook_requests import Outcome, Poster

POLL_S = 0.05
CLAIM_GATHER_S = 0.005
# A worker holds up to this many times an endpoint's concurrency (in flight, or claimed and waiting
# for a slot), so that a slot that frees takes the next delivery at once instead of waiting for a
# claim: the claim's round trips are off the path from one request to the next, and one claim
# brings enough for the time it takes. Measured: 2 left a queue at 50 % of ingest, 4 did not
# (docs/PERFORMANCE.md).
PREFETCH = 4
# Beyond the requests' timeouts: time to record the attempt after it. A lease that runs out while its
# worker still lives means one more (harmless, same webhook-id) delivery, never a lost one.
LEASE_MARGIN_S = 5.0
_log = structlog.get_logger("intake.webhooks")


@dataclasses.dataclass(frozen=True)
class DeliveryConfig:
    """How deliveries are made (service/settings.py: the WEBHOOK_* settings)."""

    timeout_s: float = 10.0
    endpoint_concurrency: int = 8
    max_in_flight: int = 64
    retry_base_s: float = 5.0
    max_attempts: int = 10
    https_only: bool = True
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @property
    def lease_s(self) -> float:
        """How long a claim holds a delivery: up to one timeout waiting for a slot (one that waits
        longer is let go unsent, see `Sender._slot`), then at most one timeout for its request."""
        return 2 * self.timeout_s + LEASE_MARGIN_S

    @property
    def send_within_s(self) -> float:
        """How long after its claim a held delivery may still be sent: its request must end, and be
        recorded, before the lease runs out and another worker may send it too."""
        return self.lease_s - self.timeout_s - LEASE_MARGIN_S


@dataclasses.dataclass(frozen=True)
class _Held:
    """A claimed delivery waiting for a slot: the row, its event's stream's rows (for the body), when claimed."""

    row: asyncpg.Record
    stream: list[asyncpg.Record]
    claimed: float  # time.monotonic()


def _nobody() -> None:
    """The default `healthy` callback: nobody is watching."""


class Undeliverable(Exception):
    """The delivery's body cannot be built from the log; the message names the event and the error's type only."""


def _deliveries(rows: list[asyncpg.Record]) -> list[tuple[asyncpg.Record, list[asyncpg.Record]]]:
    """A claim's rows (one per delivery and event of its stream, in delivery order) as (delivery, stream's rows)."""
    claimed: dict[int, tuple[asyncpg.Record, list[asyncpg.Record]]] = {}
    for row in rows:
        _, stream = claimed.setdefault(row["id"], (row, []))
        if row["position"] is not None:  # None: the event was not found (see `_body`)
            stream.append(row)
    return list(claimed.values())


def _body(delivery: asyncpg.Record, rows: list[asyncpg.Record]) -> bytes:
    """The delivery's body, decoded from its stream's rows (no keyring: bodies carry no personal data);
    Undeliverable if the rows cannot give one."""
    if not rows:
        # Events are never deleted and a delivery is made only for a committed one: this one was
        # taken out of the log by hand, and only putting it back can help.
        raise Undeliverable(f"event {delivery['webhook_id']} was not found")
    stream: list[StoredEvent] = []
    for row in rows:
        try:
            stream.append(decode_record(row, None))
        except UNREADABLE as failure:  # the event delivered, or an earlier one of its stream
            raise Undeliverable(f"event {row['event_id']} cannot be decoded: {type(failure).__name__}") from None
    try:
        return webhook_bodies.body(stream[-1], stream, delivery["webhook_type"])
    except UNREADABLE as failure:
        raise Undeliverable(f"event {delivery['webhook_id']} cannot be decoded: {type(failure).__name__}") from None


class Sender:
    """Runs deliveries until stopped; one per worker process."""

    def __init__(self, pool: asyncpg.Pool, box: SecretBox, config: DeliveryConfig) -> None:
        self._pool = pool
        self._config = config
        self._poster = Poster(box, timeout_s=config.timeout_s, https_only=config.https_only,
                              allowed_networks=config.allowed_networks)
        self._sql = queries("webhooks")
        self._in_flight: Counter[object] = Counter()  # per endpoint: its slots in use (requests)
        self._held: Counter[object] = Counter()  # per endpoint: claimed and not yet answered
        self._waiting: dict[object, collections.deque[_Held]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._done = asyncio.Event()
        self._finished: list[tuple[asyncpg.Record, dt.datetime, Outcome]] = []  # attempts not yet recorded

    async def run(self, stop: asyncio.Event, wake: asyncio.Event, healthy: Callable[[], None] = _nobody) -> None:
        """Claim and send until `stop`; woken by new deliveries, finished requests, or the poll."""
        client = webhook_requests.client()
        try:
            # Two connections for the loop's life, for the claims and for the records side by side:
            # no acquire and no reset round trip per turn (each round trip waits its turn in a busy
            # event loop), nor a wait behind the projector jobs for a pooled connection. One that
            # breaks ends the loop, and its supervisor starts it again.
            with translating_driver_errors():
                async with self._pool.acquire(timeout=5) as claiming, self._pool.acquire(timeout=5) as recording:
                    await claiming.execute(self._sql["relaxed_commit"])  # undone on release (the pool's reset)
                    await self._turns(stop, wake, healthy, client, claiming, recording)
                    await self._record_finished(recording)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await client.close()

    async def _turns(self, stop: asyncio.Event, wake: asyncio.Event, healthy: Callable[[], None],
                     client: aiohttp.ClientSession, claiming: asyncpg.Connection,
                     recording: asyncpg.Connection) -> None:
        # The attempts that finished are recorded in one statement at a time, beside the turns: a
        # claim never waits for the record's commit (a WAL flush), only the next record does.
        recorder = asyncio.create_task(asyncio.sleep(0))
        try:
            while not stop.is_set():
                wake.clear()
                self._done.clear()
                if recorder.done():
                    recorder.result()  # a record that failed ends the loop; its supervisor starts it again
                    recorder = asyncio.create_task(self._record_finished(recording))
                await self._claim(claiming)  # refills the room that finished requests left
                self._fill_slots(client)
                healthy()
                waits = [asyncio.ensure_future(e.wait()) for e in (stop, wake, self._done)]
                await asyncio.wait(waits, timeout=POLL_S, return_when=asyncio.FIRST_COMPLETED)
                for waiting in waits:
                    waiting.cancel()
                if self._done.is_set() and not wake.is_set():
                    # Room freed: let a few more requests finish so that one claim refills it all.
                    await asyncio.sleep(CLAIM_GATHER_S)
        finally:
            await recorder  # its connection is the final record's

    async def _claim(self, conn: asyncpg.Connection) -> None:
        """One claim (no endpoint beyond what it may hold), with the claimed events' streams, in one statement."""
        free = PREFETCH * self._config.max_in_flight - sum(self._held.values())
        if free <= 0:
            return
        hold = PREFETCH * self._config.endpoint_concurrency
        busy = [(endpoint, n) for endpoint, n in self._held.items() if n > 0]
        full = [endpoint for endpoint, n in busy if n >= hold]
        with translating_driver_errors():
            claimed = time.monotonic()  # no later than the lease's start in the database: on the safe side
            rows = await conn.fetch(self._sql["claim_due"], full, [e for e, _ in busy], [n for _, n in busy],
                                    hold, free, self._config.lease_s)
        for delivery, stream in _deliveries(rows):
            self._held[delivery["endpoint_id"]] += 1
            self._waiting.setdefault(delivery["endpoint_id"], collections.deque()).append(
                _Held(delivery, stream, claimed))

    def _fill_slots(self, client: aiohttp.ClientSession) -> None:
        """A request task for each free slot of an endpoint with deliveries waiting (within the worker's total)."""
        for endpoint, waiting in list(self._waiting.items()):
            if not (waiting or self._held[endpoint] or self._in_flight[endpoint]):  # forget idle endpoints
                del self._waiting[endpoint], self._held[endpoint], self._in_flight[endpoint]
                continue
            wanted = min(len(waiting), self._config.endpoint_concurrency - self._in_flight[endpoint],
                         self._config.max_in_flight - sum(self._in_flight.values()))
            for _ in range(wanted):
                self._start(client, endpoint)

    def _start(self, client: aiohttp.ClientSession, endpoint: object) -> None:
        self._in_flight[endpoint] += 1
        task = asyncio.create_task(self._slot(client, endpoint))
        self._tasks.add(task)
        def finished(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            self._in_flight[endpoint] -= 1
            self._done.set()
            if not done.cancelled() and done.exception() is not None:
                # Its lease runs out and the delivery is tried again; the type only, never a message.
                _log.error("webhook.delivery_crashed", endpoint_id=str(endpoint), error=type(done.exception()).__name__)

        task.add_done_callback(finished)

    async def _slot(self, client: aiohttp.ClientSession, endpoint: object) -> None:
        """One of the endpoint's slots: sends what waits for the endpoint, one request at a time.
        A delivery that waited too long (behind requests to an endpoint that hangs) is let go unsent:
        its lease runs out and it is claimed again, so no two workers ever send it at once."""
        waiting = self._waiting[endpoint]
        while waiting:
            held = waiting.popleft()
            try:
                if time.monotonic() - held.claimed <= self._config.send_within_s:
                    await self._deliver(client, held.row, held.stream)
            finally:
                # Room for one more claimed delivery; the attempt is recorded by the claim loop.
                self._held[endpoint] -= 1
                self._done.set()

    async def _deliver(self, client: aiohttp.ClientSession, row: asyncpg.Record, stream: list[asyncpg.Record]) -> None:
        attempted_at = dt.datetime.now(dt.UTC)
        try:
            body = _body(row, stream)
        except Undeliverable as failure:  # recorded as an attempt with no request, and dead-lettered
            self._finished.append((row, attempted_at, Outcome(None, str(failure), 0, permanent=True)))
            return
        outcome = await self._poster.post(client, row, str(row["webhook_id"]), body)
        self._finished.append((row, attempted_at, outcome))

    async def _record_finished(self, conn: asyncpg.Connection) -> None:
        """Every finished attempt since the last call, in one statement (one commit, not one per attempt).
        Should the worker die first, their leases run out and they are sent again: at least once."""
        # One per delivery (the statement updates each once): a second one exists only if a lease
        # ran out while this worker still held the first, and either answer settles it.
        finished = list({row["id"]: (row, at, outcome) for row, at, outcome in self._finished}.values())
        self._finished = []
        if not finished:
            return
        settled = [(row, attempted_at, outcome, *self._settle(row, outcome)) for row, attempted_at, outcome in finished]
        columns = list(zip(*[(row["id"], state, next_at, attempted_at, outcome.status, outcome.latency_ms, outcome.error)
                             for row, attempted_at, outcome, state, next_at in settled], strict=True))
        with translating_driver_errors():
            await conn.execute(self._sql["record_attempts"], *map(list, columns))
        for row, _, outcome, state, _ in settled:
            # Debug for a success (one line per delivery would cost more than the delivery's own work).
            (_log.debug if state == "delivered" else _log.info)(
                "webhook.attempted", delivery_id=row["id"], endpoint_id=str(row["endpoint_id"]), state=state,
                status=outcome.status, error=outcome.error, latency_ms=outcome.latency_ms)

    def _settle(self, row: asyncpg.Record, outcome: Outcome) -> tuple[str, dt.datetime | None]:
        """(state, next attempt) after this outcome: delivered, pending again with a backoff, or dead."""
        attempt = row["attempts"] - row["budget_from"] + 1
        if outcome.status is not None and 200 <= outcome.status < 300:
            return "delivered", None
        if not outcome.permanent and webhook_policy.retryable(outcome.status) and attempt < self._config.max_attempts:
            delay = webhook_policy.retry_delay_s(attempt, self._config.retry_base_s, retry_after_s=outcome.retry_after_s)
            return "pending", dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
        return "dead", None
