"""Operations endpoints: liveness, readiness, metrics."""

from __future__ import annotations

import asyncio

import redis.exceptions
from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST

from events.errors import StoreUnavailable, translating_driver_errors
from projections.status import outbox_stats
from projections.status import status as projection_status
from service import migrations


@get("/livez", summary="Liveness", tags=["ops"], sync_to_thread=False)
def livez() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}


@get("/readyz", summary="Readiness", tags=["ops"])
async def readyz(request: Request) -> Response[dict[str, object]]:
    """200 when the database answers in time and its schema is exactly the migration files."""
    state = request.app.state
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(state.settings.readiness_timeout_ms / 1000):
            with translating_driver_errors():
                async with state.pool.acquire() as conn:
                    drift = await migrations.check(conn, state.migrations)
        checks["database"] = "ok"
        checks["schema"] = "ok" if drift.clean else drift.describe()
    except (StoreUnavailable, TimeoutError):
        checks["database"] = "unavailable"
    ready = all(value == "ok" for value in checks.values())
    # Redis is transport, never truth: ingestion works without it, so it is
    # reported here but never makes the API unready.
    report = {"status": "ready" if ready else "not ready", "checks": checks,
              "degraded": {"redis": await _redis_state(state)}}
    return Response(report,
                    status_code=200 if ready else 503, headers={} if ready else {"Retry-After": "1"})


async def _redis_state(state: object) -> str:
    client = getattr(state, "redis", None)
    if client is None:
        return "not configured"
    try:
        async with asyncio.timeout(state.settings.readiness_timeout_ms / 1000):  # type: ignore[attr-defined]
            await client.ping()
    except (TimeoutError, OSError, redis.exceptions.RedisError):
        return "unavailable"
    return "ok"


@get("/metrics", summary="Prometheus metrics", tags=["ops"], media_type=CONTENT_TYPE_LATEST)
async def metrics(request: Request) -> Response[bytes]:
    """Prometheus text; outbox gauges are read from the database at scrape time (best effort)."""
    state = request.app.state
    try:
        with translating_driver_errors():
            async with state.pool.acquire(timeout=state.settings.readiness_timeout_ms / 1000) as conn:
                outbox = await outbox_stats(conn)
                lag = await projection_status(conn)
        state.metrics.outbox_backlog.set(outbox.backlog)
        state.metrics.outbox_oldest_age.set(outbox.oldest_age_s)
        for projection in lag:
            state.metrics.projection_lag_events.labels(projection.projection).set(projection.lag_events)
            state.metrics.projection_lag_seconds.labels(projection.projection).set(projection.lag_seconds)
            state.metrics.projection_parked.labels(projection.projection).set(projection.parked)
    except StoreUnavailable:
        pass  # the scrape still answers; the gauges keep their last values and /readyz says why
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
