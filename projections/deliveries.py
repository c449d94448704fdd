"""The webhooks' sender: claims due deliveries and POSTs them, signed, recording every attempt.

Isolation: each worker keeps at most `endpoint_concurrency` requests in flight per endpoint and
`max_in_flight` in all, and every request is bounded by `timeout_s` (the whole exchange, not
each read), so an endpoint that hangs holds only its own slots, for at most the timeout, and the
claim skips it while they are full: other endpoints' deliveries keep going. Redirects are not
followed (httpx's default, and said again here): the URL we checked is the only one we call.

A delivery is leased when claimed (its next attempt pushed past the timeout), so a worker killed
mid-request leaves it to be retried when the lease runs out: at least once, with the same
webhook-id (the event id), which is what lets a receiver stay idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import ipaddress
import time
from collections import Counter
from collections.abc import Callable

import asyncpg
import httpx
import structlog

from events.errors import translating_driver_errors
from events.sqlfiles import queries
from events.store import decode_record
from projections import signatures, webhook_bodies, webhook_policy
from projections.secretbox import SecretBox

POLL_S = 0.05
CLAIM_GATHER_S = 0.005
# Beyond the request timeout: time to record the attempt after it. A lease that runs out while its
# worker still lives means one more (harmless, same webhook-id) delivery, never a lost one.
LEASE_MARGIN_S = 5.0
_log = structlog.get_logger("intake.webhooks")


@dataclasses.dataclass(frozen=True)
class DeliveryConfig:
    """How deliveries are made (service/settings.py: the WEBHOOK_* settings)."""

    timeout_s: float = 10.0
    endpoint_concurrency: int = 4
    max_in_flight: int = 64
    retry_base_s: float = 5.0
    max_attempts: int = 10
    https_only: bool = True
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one attempt came to."""

    status: int | None
    error: str | None
    latency_ms: int
    retry_after_s: float | None = None


def _nobody() -> None:
    """The default `healthy` callback: nobody is watching."""


class Sender:
    """Runs deliveries until stopped; one per worker process."""

    def __init__(self, pool: asyncpg.Pool, box: SecretBox, config: DeliveryConfig) -> None:
        self._pool = pool
        self._box = box
        self._config = config
        self._sql = queries("webhooks")
        self._in_flight: Counter[object] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._done = asyncio.Event()
        self._keys: dict[bytes, bytes] = {}  # sealed secret → key: decrypting once per secret, not per delivery

    async def run(self, stop: asyncio.Event, wake: asyncio.Event, healthy: Callable[[], None] = _nobody) -> None:
        """Claim and send until `stop`; woken by new deliveries, finished requests, or the poll."""
        client = httpx.AsyncClient(follow_redirects=False, limits=httpx.Limits(
            max_connections=self._config.max_in_flight, max_keepalive_connections=self._config.max_in_flight))
        try:
            while not stop.is_set():
                wake.clear()
                self._done.clear()
                for row in await self._claim():
                    self._start(client, row)
                healthy()
                waits = [asyncio.ensure_future(e.wait()) for e in (stop, wake, self._done)]
                await asyncio.wait(waits, timeout=POLL_S, return_when=asyncio.FIRST_COMPLETED)
                for waiting in waits:
                    waiting.cancel()
                if self._done.is_set() and not wake.is_set():
                    # Freed slots: let a few more requests finish so that one claim refills them all.
                    await asyncio.sleep(CLAIM_GATHER_S)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await client.aclose()

    async def _claim(self) -> list[asyncpg.Record]:
        free = self._config.max_in_flight - sum(self._in_flight.values())
        if free <= 0:
            return []
        limit = self._config.endpoint_concurrency
        busy = [(endpoint, n) for endpoint, n in self._in_flight.items() if n > 0]
        full = [endpoint for endpoint, n in busy if n >= limit]
        with translating_driver_errors():
            async with self._pool.acquire(timeout=5) as conn:
                return await conn.fetch(self._sql["claim_due"], full, [e for e, _ in busy], [n for _, n in busy],
                                        limit, free, self._config.timeout_s + LEASE_MARGIN_S)

    def _start(self, client: httpx.AsyncClient, row: asyncpg.Record) -> None:
        self._in_flight[row["endpoint_id"]] += 1
        task = asyncio.create_task(self._deliver(client, row))
        self._tasks.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            self._in_flight[row["endpoint_id"]] -= 1
            self._done.set()
            if not done.cancelled() and done.exception() is not None:
                # The lease runs out and the delivery is tried again; the type only, never a message.
                _log.error("webhook.delivery_crashed", delivery_id=row["id"], error=type(done.exception()).__name__)

        task.add_done_callback(finished)

    async def _deliver(self, client: httpx.AsyncClient, row: asyncpg.Record) -> None:
        with translating_driver_errors():
            async with self._pool.acquire(timeout=5) as conn:
                stream = [decode_record(r, None) for r in await conn.fetch(self._sql["event_with_stream"],
                                                                           row["event_position"])]
        body = webhook_bodies.body(stream[-1], stream, row["webhook_type"])
        attempted_at = dt.datetime.now(dt.UTC)
        outcome = await self._post(client, row, str(row["event_id"]), body)
        await self._record(row, attempted_at, outcome)

    async def _post(self, client: httpx.AsyncClient, endpoint: asyncpg.Record, webhook_id: str,
                    body: bytes) -> Outcome:
        started = time.perf_counter()
        status, error, retry_after = None, None, None
        try:
            host, port = webhook_policy.check_url(endpoint["url"], https_only=self._config.https_only)
            webhook_policy.check_addresses(await webhook_policy.resolved_addresses(host, port),
                                           self._config.allowed_networks)
            headers = self._headers(endpoint, webhook_id, body)
            async with asyncio.timeout(self._config.timeout_s):
                response = await client.post(endpoint["url"], content=body, headers=headers,
                                             timeout=self._config.timeout_s, follow_redirects=False)
            status, retry_after = response.status_code, _retry_after(response.headers.get("retry-after"))
        except webhook_policy.EndpointRefused:
            error = "EndpointRefused"
        except (TimeoutError, httpx.TransportError) as failure:
            error = type(failure).__name__
        return Outcome(status, error, round((time.perf_counter() - started) * 1000), retry_after)

    def _headers(self, endpoint: asyncpg.Record, webhook_id: str, body: bytes) -> dict[str, str]:
        sealed = [endpoint["sealed_secret"]] + ([endpoint["previous_sealed"]] if endpoint["previous_valid"] else [])
        keys = [self._key(s, endpoint["endpoint_id"]) for s in sealed]
        timestamp = int(time.time())
        return {"content-type": "application/json", "webhook-id": webhook_id, "webhook-timestamp": str(timestamp),
                "webhook-signature": signatures.signature_header(keys, webhook_id, timestamp, body)}

    def _key(self, sealed: bytes, endpoint_id: object) -> bytes:
        if sealed not in self._keys:
            if len(self._keys) > 10_000:  # rotated-out secrets must not accumulate forever
                self._keys.clear()
            self._keys[sealed] = signatures.secret_key(self._box.open(sealed, str(endpoint_id)))
        return self._keys[sealed]

    async def _record(self, row: asyncpg.Record, attempted_at: dt.datetime, outcome: Outcome) -> None:
        attempt = row["attempts"] - row["budget_from"] + 1
        state, next_at = "dead", None
        if outcome.status is not None and 200 <= outcome.status < 300:
            state = "delivered"
        elif outcome.error != "EndpointRefused" and webhook_policy.retryable(outcome.status) \
                and attempt < self._config.max_attempts:
            delay = webhook_policy.retry_delay_s(attempt, self._config.retry_base_s, retry_after_s=outcome.retry_after_s)
            state, next_at = "pending", dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
        with translating_driver_errors():
            async with self._pool.acquire(timeout=5) as conn:
                await conn.execute(self._sql["record_attempt"], row["id"], state, next_at, attempted_at,
                                   outcome.status, outcome.latency_ms, outcome.error)
        # Debug for a success (one line per delivery would cost more than the delivery's own work).
        (_log.debug if state == "delivered" else _log.info)("webhook.attempted", delivery_id=row["id"], endpoint_id=str(row["endpoint_id"]), state=state,
                  status=outcome.status, error=outcome.error, latency_ms=outcome.latency_ms)


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the delay form; an HTTP date is ignored: our own schedule applies)."""
    with contextlib.suppress(ValueError):
        return max(float(value), 0.0) if value is not None else None
    return None
