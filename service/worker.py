"""`intake worker`: arq projector workers, the outbox relay and the reconciliation sweep, in one process.

The arq worker is supervised: if Redis goes away it is rebuilt with backoff
instead of exiting, and the relay keeps rows in the outbox meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
from collections.abc import Awaitable, Callable

import redis.exceptions
import structlog
import uvloop
from arq import Worker, cron
from arq.connections import RedisSettings, create_pool

from projections.jobs import project_streams, sweep
from projections.projector import Projector
from projections.relay import Relay
from service.db import create_pool as create_db_pool
from service.logs import configure_logging
from service.settings import Settings

POLL_DELAY_S = 0.01  # arq polls a sorted set; this bounds the queueing part of projection lag
MAX_JOBS = 16
SWEEP_SECONDS = {0, 15, 30, 45}  # the cron sweep: every 15 s, one worker per tick (arq's cron job ids)
RESTART_MAX_S = 5.0
_log = structlog.get_logger("intake.worker")


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's connection settings, with short timeouts so an outage is noticed, not waited on."""
    if not settings.redis_url:
        raise ValueError("REDIS_URL is not set")
    return dataclasses.replace(RedisSettings.from_dsn(settings.redis_url), conn_timeout=2, conn_retries=0)


async def run_worker(settings: Settings, stop: asyncio.Event, *, relay: bool = True) -> None:
    """Run until `stop` is set, riding out Redis and PostgreSQL restarts."""
    pool = await create_db_pool(settings, application_name="intake-worker", min_size=0)
    projector = Projector(pool)

    async def relay_forever() -> None:
        redis = await create_pool(redis_settings(settings), retry=0)
        try:
            await Relay(pool, redis, settings.require_database_url()).run(stop)
        finally:
            await redis.aclose()

    async def arq_forever() -> None:
        worker = Worker(functions=[project_streams], cron_jobs=[cron(sweep, second=SWEEP_SECONDS, run_at_startup=True)],
                        redis_settings=redis_settings(settings), handle_signals=False, max_jobs=MAX_JOBS,
                        poll_delay=POLL_DELAY_S, keep_result=0, max_tries=10, job_timeout=60,
                        ctx={"projector": projector}, log_results=False)
        try:
            await worker.main()
        finally:
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                await worker.close()

    tasks = [asyncio.create_task(_supervised("arq", arq_forever, stop))]
    if relay:
        tasks.append(asyncio.create_task(_supervised("relay", relay_forever, stop)))
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await pool.close()


async def _supervised(name: str, run: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
    """Run `run` until `stop`; when Redis drops out from under it, start it again with backoff."""
    delay = 0.1
    while not stop.is_set():
        try:
            await run()
            delay = 0.1
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as error:
            _log.warning("worker.redis_unavailable", part=name, error=type(error).__name__, retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_MAX_S)


def main(settings: Settings) -> int:
    """Entry point of `intake worker`: stops cleanly on SIGINT/SIGTERM."""
    configure_logging(settings.log_level, settings.log_format)
    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)
    # uvloop, like the API: the worker's time goes to socket I/O with PostgreSQL and Redis.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run())
    return 0
