"""Every long-running loop of the worker is supervised: a loop that fails, for whatever reason, is
logged with its cause (the exception's type and frames, never its message) and started again, and
the worker's /readyz says which loop keeps failing until it stops failing. Nobody restarts anything."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from service.devstack import free_port
from service.worker import run_worker
from tests.support.consults import submit
from tests.support.servers import running_api
from tests.support.supervision import (
    REFUSAL,
    eventually,
    log_lines,
    outbox_empty,
    outbox_refusing_deletes,
    ready_when,
)
from tests.support.workers import WorkerProcess

INT_MAX = 2**31 - 1
STARTED_WITHIN_S = 30.0  # a cold worker process: imports, pools, arq
RELAYED_WITHIN_S = 5.0  # the relay polls every second; rows are deferred by at most 30 s
FAILING_WITHIN_S = 15.0  # three crashes with backoff 0.1, 0.2, 0.4 s, each after at most a 1 s poll




class Worker(NamedTuple):
    process: WorkerProcess
    probe_port: int
    log: Path


@pytest.fixture
def worker(settings, own_redis, tmp_path):
    """A real `intake worker` process on the test's database, with its probe port open."""
    probe_port = free_port()
    process = WorkerProcess({"DATABASE_URL": settings.database_url, "REDIS_URL": own_redis.url(),
                             "WORKER_HEALTH_PORT": str(probe_port)}, tmp_path / "worker.log")
    process.start()
    try:
        yield Worker(process, probe_port, tmp_path / "worker.log")
    finally:
        process.stop()


async def relay_crashes(worker: Worker, at_least: int) -> list[dict] | None:
    """The relay's crash lines in the worker's log, once there are `at_least` of them."""
    crashes = [line for line in log_lines(worker.log, "worker.loop_crashed") if line["loop"] == "relay"]
    return crashes if len(crashes) >= at_least else None


@contextlib.asynccontextmanager
async def api_client(settings, own_redis):
    async with running_api(dataclasses.replace(settings, redis_url=own_redis.url())) as base, \
            httpx.AsyncClient(base_url=base, timeout=10) as client:
        yield client


async def rows_deferred_after_a_long_outage(db) -> bool:
    return await db.fetchval("SELECT count(*) FROM outbox WHERE attempts >= 1000 AND available_at > now()") == 2


async def test_the_relay_outlives_a_long_redis_outage_and_relays_when_redis_returns(
        settings, tenant, db, own_redis, worker):
    async with api_client(settings, own_redis) as client:
        await submit(client, tenant)
        await eventually(outbox_empty(db), STARTED_WITHIN_S, "the worker's relay started")
        own_redis.kill()
        await submit(client, tenant, customer_id="cus_2")
        await submit(client, tenant, customer_id="cus_3")
    # Two rows the relay has deferred for twenty minutes and more (attempts 47 was the first to overflow).
    await db.execute("UPDATE outbox SET available_at = now(),"
                     " attempts = CASE WHEN position = (SELECT min(position) FROM outbox) THEN 1000 ELSE $1 END",
                     INT_MAX)
    await eventually(lambda: rows_deferred_after_a_long_outage(db), RELAYED_WITHIN_S, "the relay deferred both rows")
    assert await db.fetchval("SELECT bool_and(available_at <= now() + interval '30 seconds') FROM outbox")

    own_redis.start()
    await db.execute("UPDATE outbox SET available_at = now()")  # the cap is asserted above; a live relay needs no more
    await eventually(outbox_empty(db), RELAYED_WITHIN_S, "the same relay relayed once Redis returned")
    await eventually(ready_when(worker.probe_port, 200, "relay", "ok"), RELAYED_WITHIN_S, "the worker is ready")
    assert worker.process.running and worker.process.starts == 1, worker.process.log_tail()
    assert await relay_crashes(worker, at_least=1) is None


async def test_a_relay_that_hits_an_unexpected_error_is_logged_restarted_and_relays_again(
        settings, tenant, db, own_redis, worker):
    async with api_client(settings, own_redis) as client:
        await submit(client, tenant)
        await eventually(outbox_empty(db), STARTED_WITHIN_S, "the worker's relay started")
        async with outbox_refusing_deletes(db):
            await submit(client, tenant, customer_id="cus_2")
            crashes = await eventually(lambda: relay_crashes(worker, at_least=2), FAILING_WITHIN_S,
                                       "the relay crashed, was restarted, and crashed again")
        await eventually(outbox_empty(db), RELAYED_WITHIN_S, "the restarted relay relayed once the error cleared")
    assert worker.process.running and worker.process.starts == 1, worker.process.log_tail()
    assert crashes[0]["error"] == "RaiseError" and crashes[0]["level"] == "error"
    assert "projections/relay.py" in crashes[0]["traceback"] and "RaiseError" in crashes[0]["traceback"]
    assert REFUSAL not in worker.log.read_text()  # an error's message can quote row data: never logged


async def test_readiness_names_a_loop_that_keeps_failing_and_recovers_when_it_stops(
        settings, tenant, db, own_redis):
    """In-process, as `intake dev` runs the workers inside the API process."""
    own = dataclasses.replace(settings, redis_url=own_redis.url(), worker_health_port=free_port())
    stop = asyncio.Event()
    workers = asyncio.create_task(run_worker(own, stop))
    try:
        async with api_client(settings, own_redis) as client:
            await eventually(ready_when(own.worker_health_port, 200, "relay", "ok"), STARTED_WITHIN_S, "ready")
            async with outbox_refusing_deletes(db):
                await submit(client, tenant)
                failing = await eventually(ready_when(own.worker_health_port, 503, "relay", "failing"),
                                           FAILING_WITHIN_S, "/readyz reports the relay failing")
            await eventually(ready_when(own.worker_health_port, 200, "relay", "ok"), RELAYED_WITHIN_S,
                             "/readyz reports the relay ok again")
        assert failing["loops"]["relay"]["last_error"] == "RaiseError"
        assert failing["loops"]["relay"]["crashes_in_a_row"] >= 3
        assert {name: loop["state"] for name, loop in failing["loops"].items() if name != "relay"} == {
            "arq": "ok", "listener": "ok", "sweep": "ok", "webhooks.process": "ok", "webhooks.listener": "ok",
            "webhooks.fanout": "ok", "webhooks.sender": "ok"}
        assert await db.fetchval("SELECT count(*) FROM outbox") == 0
    finally:
        stop.set()
        await asyncio.wait_for(workers, timeout=15)
