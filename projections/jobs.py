"""arq jobs: plain `async def f(ctx, …)` over the projector that the worker puts in `ctx`.

Jobs carry stream ids only (never event data): the projector reads the events from the log.
"""

from __future__ import annotations

from typing import Any

from arq import Retry

from events.errors import StoreUnavailable

RETRY_MAX_S = 5.0  # an outage is retried with backoff, up to this long between tries


async def project_streams(ctx: dict[str, Any], *stream_ids: str) -> int:
    """Catch a relayed batch of streams up in every projection."""
    try:
        return await ctx["projector"].catch_up(*stream_ids)
    except StoreUnavailable:
        raise Retry(defer=min(2 ** min(ctx["job_try"], 10) * 0.1, RETRY_MAX_S)) from None


async def sweep(ctx: dict[str, Any]) -> int:
    """Repair whatever the queue lost (cron)."""
    return await ctx["projector"].sweep()
