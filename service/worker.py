"""`intake worker`: arq projector workers, the outbox relay and the reconciliation sweep, in one process,
and the outbound webhooks in a child process it starts (service/webhook_process.py).

Every long-running loop (the arq worker, the relay, its LISTEN connection) runs under
service/loops.py's supervisor: whatever ends one, a Redis outage or a bug, it is logged and
started again with backoff instead of dying silently, and the relay keeps rows in the outbox
meanwhile. With WORKER_HEALTH_PORT set, /readyz there names any loop that keeps failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import signal
from typing import Any

import asyncpg
import redis.exceptions
import structlog
import uvloop
from arq import Worker, cron
from arq.connections import RedisSettings, create_pool

from projections.jobs import JobFailed, project_streams, sweep
from projections.projector import Projector
from projections.relay import Relay, listen
from service.db import create_pool as create_db_pool
from service.keyring import starting_keyring
from service.logs import configure_logging
from service.loops import Healthy, Loop, LoopHealth, log_crash, supervise
from service.probes import serve_probes
from service.sealer import sealing_tasks
from service.settings import Settings
from service.webhook_process import WebhookProcess
from service.webhooks import secret_box

POLL_DELAY_S = 0.01  # arq polls a sorted set; this bounds the queueing part of projection lag
MAX_JOBS = 16
SWEEP_SECONDS = {0, 15, 30, 45}  # the cron sweep: every 15 s, one worker per tick (arq's cron job ids)
_log = structlog.get_logger("intake.worker")


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's connection settings, with short timeouts so an outage is noticed, not waited on."""
    if not settings.redis_url:
        raise ValueError("REDIS_URL is not set")
    return dataclasses.replace(RedisSettings.from_dsn(settings.redis_url), conn_timeout=2, conn_retries=0)


class _ReportingWorker(Worker):
    """arq's Worker, reporting each completed poll (arq's own heart beat) as a healthy iteration."""

    def __init__(self, *args: Any, healthy: Healthy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._healthy = healthy

    async def heart_beat(self) -> None:
        await super().heart_beat()
        self._healthy()


async def run_worker(settings: Settings, stop: asyncio.Event, *, relay: bool = True,
                     health: LoopHealth | None = None) -> None:
    """Run until `stop` is set, riding out Redis and PostgreSQL restarts and restarting any loop that fails."""
    health = health or LoopHealth()
    secret_box(settings)  # a missing or bad SECRETS_KEY stops the worker (and its webhooks) before it connects
    pool = await create_db_pool(settings, application_name="intake-worker", min_size=0)
    keyring = await starting_keyring(settings, pool, timeout_s=settings.db_connect_timeout_ms / 1000)
    wake = asyncio.Event()  # the listener's notifications, for whichever relay is running
    loops: dict[str, Loop] = {"arq": functools.partial(_arq_forever, settings, Projector(pool, keyring), health)}
    if relay:
        loops["relay"] = functools.partial(_relay_forever, settings, pool, wake, stop)
        loops["listener"] = functools.partial(listen, settings.require_database_url(), wake, stop)
    # Outbound webhooks: a follower of the log and a sender, in a process of their own that this
    # loop starts, restarts and stops, and whose loops' health it mirrors (docs/WEBHOOKS.md).
    loops["webhooks.process"] = WebhookProcess(settings, health).run
    # The sweep is an arq cron job, not a task of ours: _sweep records its outcomes; and with
    # several workers any one may go long without running it, so it has no stall bound.
    health.watch("sweep", stall_after_s=None)
    tasks = [asyncio.create_task(supervise(name, loop, stop, health)) for name, loop in loops.items()]
    tasks += sealing_tasks(settings, pool, stop, health)
    probes = await _open_probes(settings, health)
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if probes is not None:
            probes.close()
        await pool.close()


async def _relay_forever(settings: Settings, pool: asyncpg.Pool, wake: asyncio.Event, stop: asyncio.Event,
                         healthy: Healthy) -> None:
    redis = await create_pool(redis_settings(settings), retry=0)
    try:
        await Relay(pool, redis, wake).run(stop, healthy)
    finally:
        await redis.aclose()


async def _arq_forever(settings: Settings, projector: Projector, health: LoopHealth, healthy: Healthy) -> None:
    worker = _ReportingWorker(
        functions=[project_streams], cron_jobs=[cron(_sweep, name="cron:sweep", second=SWEEP_SECONDS,
                                                     run_at_startup=True)],
        redis_settings=redis_settings(settings), handle_signals=False, max_jobs=MAX_JOBS,
        poll_delay=POLL_DELAY_S, keep_result=0, max_tries=10, job_timeout=60,
        ctx={"projector": projector, "health": health}, log_results=False, healthy=healthy)
    try:
        await worker.main()
    finally:
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            await worker.close()


async def _sweep(ctx: dict[str, Any]) -> int:
    """The cron sweep, its outcome recorded with the loops': a sweep that keeps failing is a repair loop that is dead."""
    health: LoopHealth = ctx["health"]
    try:
        swept = await sweep(ctx)
    # A supervisor's hook: recorded and logged (type and frames only), then re-raised, so arq
    # still handles the failed job its own way and the next tick runs the sweep again.
    except Exception as error:
        log_crash("sweep", error, crashes_in_a_row=health.crashed("sweep", error))
        raise JobFailed(f"sweep: {type(error).__name__}") from None  # arq logs this, not the message
    health.healthy("sweep")
    return swept


async def _open_probes(settings: Settings, health: LoopHealth) -> asyncio.Server | None:
    if not settings.worker_health_port:
        return None
    where = {"host": settings.worker_health_host, "port": settings.worker_health_port}
    try:
        server = await serve_probes(health, settings.worker_health_host, settings.worker_health_port)
    except OSError as error:
        # The probes are a window onto the loops: a port already taken must not stop the loops
        # themselves (under `intake dev` that would end them silently behind a running API).
        # A probe that gets no answer reads as not ready, which is the truth about this window.
        _log.error("worker.probes_unavailable", error=type(error).__name__, **where)
        return None
    _log.info("worker.probes_listening", **where)
    return server


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
