"""Redis is transport, never truth: with Redis dead the API still accepts writes and stays ready
(reporting Redis as degraded), and the outbox keeps everything for later."""

from __future__ import annotations

import dataclasses

import httpx

from service.devstack import EmbeddedRedis
from tests.support.payloads import headers, submission
from tests.support.servers import running_api


async def test_api_stays_ready_and_accepts_writes_while_redis_is_down(settings, tenant, db, tmp_path):
    redis = EmbeddedRedis(tmp_path / "redis")
    redis.start()
    try:
        own = dataclasses.replace(settings, redis_url=redis.url())
        async with running_api(own) as base, httpx.AsyncClient(base_url=base) as client:
            assert (await client.get("/readyz")).json()["degraded"] == {"redis": "ok"}
            redis.kill()
            ready = await client.get("/readyz")
            created = await client.post("/v1/businesses/acme/consult-submissions", json=submission(),
                                        headers=headers(tenant.key))
            metrics = (await client.get("/metrics")).text
        assert ready.status_code == 200 and ready.json()["degraded"] == {"redis": "unavailable"}
        assert created.status_code == 202
        assert await db.fetchval("SELECT count(*) FROM outbox") == 1
        assert 'intake_projection_lag_events{projection="consultations"} 1.0' in metrics
    finally:
        redis.stop()
