"""PostgreSQL really restarts under a running `intake worker`: its pool and the relay's LISTEN
connection come back by themselves, and what is written afterwards is projected, with nobody
restarting the worker."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import asyncpg
import httpx
import pytest

from service.devstack import EmbeddedPostgres, EmbeddedRedis
from tests.support.deployment import deployment_settings
from tests.support.payloads import headers, submission
from tests.support.servers import running_api
from tests.support.workers import WorkerProcess

URL = "/v1/businesses/acme/consult-submissions"
PROJECTED_WITHIN_S = 30.0
RELAYED_WITHIN_S = 5.0  # the relay polls every second; the sweep, the fallback, only every 15 s


async def submitted(client: httpx.AsyncClient, key: str, customer_id: str) -> None:
    """POST until the API has the database back (503 while it is down), then expect a 202."""
    retry_key = headers(key)
    deadline = time.monotonic() + PROJECTED_WITHIN_S
    while (response := await client.post(URL, json=submission(customer_id=customer_id), headers=retry_key)
           ).status_code == 503 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert response.status_code == 202, response.text


async def consultations_reach(server: EmbeddedPostgres, count: int) -> float:
    """Seconds until the consultations table holds `count` rows (fails past the deadline)."""
    started = time.monotonic()
    while time.monotonic() - started < PROJECTED_WITHIN_S:
        try:
            conn = await asyncpg.connect(server.url(), timeout=2)
            try:
                if await conn.fetchval("SELECT count(*) FROM consultations") >= count:
                    return time.monotonic() - started
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError):
            pass  # still starting
        await asyncio.sleep(0.1)
    pytest.fail(f"fewer than {count} consultations projected within {PROJECTED_WITHIN_S:g}s")


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_worker_rides_out_a_postgres_restart_without_being_restarted(own_postgres, how, tmp_path):
    server, tenant = own_postgres
    redis = EmbeddedRedis(tmp_path / "redis")
    redis.start()
    worker = WorkerProcess({"DATABASE_URL": server.url(), "REDIS_URL": redis.url()}, tmp_path / "worker.log")
    settings = dataclasses.replace(deployment_settings(), database_url=server.url(), redis_url=redis.url(),
                                   db_connect_timeout_ms=500, db_acquire_timeout_ms=1000)
    worker.start()
    try:
        async with running_api(settings) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
            await submitted(client, tenant.key, "cus_before")
            await consultations_reach(server, 1)

            getattr(server, how)()
            await asyncio.sleep(1)  # the worker's connections are broken now, its relay polling a dead server
            server.start()
            await submitted(client, tenant.key, "cus_after")
            after_s = await consultations_reach(server, 2)
        # By the relay, not merely the 15 s sweep: its pool and polling came back (0.12 s measured).
        assert after_s < RELAYED_WITHIN_S, f"{after_s:.1f}s: was it only the sweep?"
        assert worker.running and worker.starts == 1, worker.log_tail(2000)
    finally:
        worker.stop()
        redis.stop()
