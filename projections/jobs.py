"""arq jobs: plain `async def f(ctx, …)` over the projector that the worker puts in `ctx`.

Jobs carry stream ids only (never event data): the projector reads the events from the log.
"""

from __future__ import annotations

from typing import Any

import structlog
from arq import Retry

from events.errors import StoreUnavailable
from events.redaction import redacted_traceback

RETRY_MAX_S = 5.0  # an outage is retried with backoff, up to this long between tries
_log = structlog.get_logger("intake.jobs")


class JobFailed(Exception):
    """A job failed for an unexpected reason; its frames and type were logged (job.failed)."""


def failed(job: str, error: BaseException) -> JobFailed:
    """What arq is given to log in place of `error`: arq prints a failure's message and traceback,
    and a driver's message can quote row data."""
    _log.error("job.failed", job=job, error=type(error).__name__, traceback=redacted_traceback(error))
    return JobFailed(f"{job}: {type(error).__name__}")


async def project_streams(ctx: dict[str, Any], *stream_ids: str) -> int:
    """Catch a relayed batch of streams up in every projection."""
    try:
        return await ctx["projector"].catch_up(*stream_ids)
    except StoreUnavailable:
        raise Retry(defer=min(2 ** min(ctx["job_try"], 10) * 0.1, RETRY_MAX_S)) from None
    except Exception as error:  # anything else: logged redacted here; the sweep repairs what it left
        raise failed("project_streams", error) from None


async def sweep(ctx: dict[str, Any]) -> int:
    """Repair whatever the queue lost (cron)."""
    return await ctx["projector"].sweep()
