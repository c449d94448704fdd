"""Operations endpoints: liveness, readiness, metrics (the looking is done by service/health.py)."""

from __future__ import annotations

from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST


@get("/livez", summary="Liveness", tags=["ops"], sync_to_thread=False)
def livez() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}


@get("/readyz", summary="Readiness", tags=["ops"])
async def readyz(request: Request) -> Response[dict[str, object]]:
    """200 when the database answers in time and its schema is exactly the migration files."""
    seen = await request.app.state.health.readiness()
    report = {"status": "ready" if seen.ready else "not ready", "checks": seen.checks, "degraded": seen.degraded}
    return Response(report, status_code=200 if seen.ready else 503,
                    headers={} if seen.ready else {"Retry-After": "1"})


@get("/metrics", summary="Prometheus metrics", tags=["ops"], media_type=CONTENT_TYPE_LATEST)
async def metrics(request: Request) -> Response[bytes]:
    """Prometheus text; outbox and projection gauges are read from the database at scrape time."""
    state = request.app.state
    await state.health.refresh_gauges(state.metrics)
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
