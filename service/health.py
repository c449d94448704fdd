"""What /readyz and /metrics look at: the database, the schema, Redis, and the gauges read from the log.

Every look is bounded by READINESS_TIMEOUT_MS, so a probe never hangs on a dead dependency.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
import redis.exceptions
from redis.asyncio import Redis

from events.errors import StoreUnavailable, translating_driver_errors
from events.sqlfiles import queries
from projections.status import outbox_stats
from projections.status import status as projection_status
from service import migrations
from service.metrics import Metrics


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether this process should get traffic, and why not."""

    ready: bool
    checks: dict[str, str]
    degraded: dict[str, str]


class Health:
    """The dependencies' state, for the operations endpoints."""

    def __init__(self, pool: asyncpg.Pool, redis_client: Redis | None, *, timeout_s: float,
                 expected: list[migrations.Migration]) -> None:
        self._pool = pool
        self._redis = redis_client
        self._timeout = timeout_s
        self._expected = expected

    async def readiness(self) -> Readiness:
        """Ready when the database answers in time and its schema is exactly the migration files.
        Redis is transport, never truth: ingestion works without it, so it is reported as
        `degraded` but never makes the API unready."""
        checks: dict[str, str] = {}
        try:
            async with asyncio.timeout(self._timeout):
                with translating_driver_errors():
                    async with self._pool.acquire() as conn:
                        drift = await migrations.check(conn, self._expected)
            checks["database"] = "ok"
            checks["schema"] = "ok" if drift.clean else drift.describe()
        except (StoreUnavailable, TimeoutError):
            checks["database"] = "unavailable"
        ready = all(value == "ok" for value in checks.values())
        return Readiness(ready, checks, {"redis": await self._redis_state()})

    async def _redis_state(self) -> str:
        if self._redis is None:
            return "not configured"
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.ping()
        except (TimeoutError, OSError, redis.exceptions.RedisError):
            return "unavailable"
        return "ok"

    async def refresh_gauges(self, metrics: Metrics) -> None:
        """Set the outbox and projection gauges from the database (best effort: on an outage
        they keep their last values, and /readyz says why)."""
        try:
            with translating_driver_errors():
                async with self._pool.acquire(timeout=self._timeout) as conn:
                    outbox = await outbox_stats(conn)
                    lag = await projection_status(conn)
                    hooks = await conn.fetchrow(queries("webhooks")["delivery_stats"])
        except StoreUnavailable:
            return
        for state in ("pending", "delivered", "dead"):
            metrics.webhook_deliveries.labels(state).set(hooks[state])
        metrics.webhook_failed_attempts.set(hooks["failed_attempts"])
        metrics.webhook_lag_seconds.set(hooks["lag_s"])
        metrics.outbox_backlog.set(outbox.backlog)
        metrics.outbox_oldest_age.set(outbox.oldest_age_s)
        for projection in lag:
            metrics.projection_lag_events.labels(projection.projection).set(projection.lag_events)
            metrics.projection_lag_seconds.labels(projection.projection).set(projection.lag_seconds)
            metrics.projection_parked.labels(projection.projection).set(projection.parked)
