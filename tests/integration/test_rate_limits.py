"""Rate limits per API key and per business, in a real Redis: the excess gets 429 with Retry-After and
the draft's RateLimit headers; other businesses are untouched; the window refills; a dead Redis fails
open (and is counted), a restarted one limits again, and no bucket is ever left without an expiry."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid

import httpx
import pytest
import redis.asyncio

from service.devstack import EmbeddedRedis
from service.ratelimit import RateLimitConfigError, RateLimited, RateLimiter, Rule, parse_rules
from tests.support.reads import api, read
from tests.support.tenants import make_tenant

WINDOW_S = 2


def limited(settings, **rules: str):
    # A generous Redis timeout: on a loaded test machine a slow answer would fail open, which is its
    # own test below, not these.
    return dataclasses.replace(settings, rate_limit_per_key=rules.get("key", "off"),
                               rate_limit_per_business=rules.get("business", "off"), rate_limit_timeout_ms=2000)


async def burst(client: httpx.AsyncClient, tenant, n: int, key: str | None = None) -> list[httpx.Response]:
    """n concurrent reads with one key."""
    return list(await asyncio.gather(*(read(client, tenant, "/consultations", key=key) for _ in range(n))))


async def test_ten_concurrent_clients_of_one_key_over_its_limit(settings, tenant, other_tenant):
    # A long window: its refill (one per 15 s) cannot let a fifth through however slowly the burst lands.
    async with api(limited(settings, key="read=4/60s")) as client:
        answers = await burst(client, tenant, 10)
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [200] * 4 + [429] * 6
        refused = next(r for r in answers if r.status_code == 429)
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "https://intake.dev/problems/rate-limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 15
        assert refused.headers["ratelimit-policy"] == '"4/60s";q=4;w=60'
        assert refused.headers["ratelimit"].startswith('"4/60s";r=0;t=')
        served = next(r for r in answers if r.status_code == 200)
        assert served.headers["ratelimit-policy"] == '"4/60s";q=4;w=60'
        # Another business's key has its own bucket.
        assert (await read(client, other_tenant, "/consultations")).status_code == 200


async def test_after_the_window_requests_pass_again(settings, tenant):
    async with api(limited(settings, key=f"read=2/{WINDOW_S}s")) as client:
        deadline = time.monotonic() + 10
        while (refused := await read(client, tenant, "/consultations")).status_code == 200:
            assert time.monotonic() < deadline, "the limit never refused"
        assert refused.status_code == 429
        deadline = time.monotonic() + WINDOW_S + 3
        while (again := await read(client, tenant, "/consultations")).status_code == 429:
            assert time.monotonic() < deadline, "the bucket never refilled"
            await asyncio.sleep(0.1)
        assert again.status_code == 200


async def test_a_businesss_keys_share_its_budget_and_its_own_limits_override_the_default(settings, tenant, db):
    await db.execute("UPDATE businesses SET rate_limits = '{\"read\": \"3/60s\"}' WHERE slug = 'acme'")
    async with api(limited(settings, business=f"read=100/{WINDOW_S}s")) as client:
        first = await burst(client, tenant, 2)  # the read-only key
        second = await burst(client, tenant, 3, key=tenant.key)  # the full key, same business
    statuses = sorted(r.status_code for r in first + second)
    assert statuses == [200, 200, 200, 429, 429]


async def test_redis_down_fails_open_and_counts_it_and_a_restarted_redis_limits_again(settings, tenant, tmp_path):
    own = EmbeddedRedis(tmp_path / "redis")
    own.start()
    try:
        rules = limited(dataclasses.replace(settings, redis_url=own.url()), key="read=3/60s", business="read=50/60s")
        async with api(rules) as client:
            assert sorted(r.status_code for r in await burst(client, tenant, 4)) == [200, 200, 200, 429]
            await assert_every_bucket_expires(own.url())
            own.kill()
            during = await burst(client, tenant, 6)
            assert [r.status_code for r in during] == [200] * 6  # fail open
            metrics = (await client.get("/metrics")).text
            assert unavailable_count(metrics) >= 1
            own.start()  # empty: Redis keeps nothing
            # Limiting resumes once the failing-open pause ends: requests are counted in the new Redis
            # again. (A burst that straddles the pause's end is partly counted, so its statuses are
            # no fixed pattern; a clean bucket after it is.)
            restarted = redis.asyncio.Redis.from_url(own.url())
            deadline = time.monotonic() + 10
            while not await restarted.keys("*"):
                assert time.monotonic() < deadline, "limiting did not resume after Redis came back"
                await burst(client, tenant, 1)
                await asyncio.sleep(0.2)
            await restarted.flushall()
            await restarted.aclose()
            assert sorted(r.status_code for r in await burst(client, tenant, 4)) == [200, 200, 200, 429]
            await assert_every_bucket_expires(own.url())
    finally:
        own.stop()


async def assert_every_bucket_expires(url: str) -> None:
    client = redis.asyncio.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match="intake:rl:*")]
        assert keys, "no bucket was written"
        ttls = [await client.pttl(key) for key in keys]
        assert all(0 < ttl <= 60_000 for ttl in ttls), ttls  # -1 would be a bucket without expiry
    finally:
        await client.aclose()


def unavailable_count(metrics: str) -> float:
    line = next(line for line in metrics.splitlines() if line.startswith("intake_rate_limit_unavailable_total "))
    return float(line.split()[1])


async def test_admin_keys_draw_on_their_own_budget_only(settings, db):
    from service import admin
    await make_tenant(db, "acme")
    admin_key = (await admin.create_key(db, business=None, scopes=[], admin=True)).key
    async with api(limited(settings, key="admin=2/60s")) as client:
        answers = [await client.get("/v1/events", headers={"Authorization": f"Bearer {admin_key}"})
                   for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 429]


def test_rules_parse_and_bad_ones_are_refused_with_the_format():
    assert parse_rules("submit=100/1s, read=5/60s") == {"submit": Rule(100, 1), "read": Rule(5, 60)}
    assert parse_rules("off") == {} and parse_rules("") == {}
    for bad in ("submit=100", "submit=0/1s", "upload=1/1s", "read=1/1m", "read=-1/1s"):
        with pytest.raises(RateLimitConfigError, match="CLASS=COUNT/SECONDS"):
            parse_rules(bad)


async def test_a_limit_above_a_thousand_a_second_grants_its_whole_burst(redis_server):
    """Each request spends 1/4000 s of the bucket, not a whole millisecond (which would cap it at 1,000/s)."""
    client = redis.asyncio.Redis.from_url(redis_server.url())
    limiter = RateLimiter(client, per_key={"read": Rule(4000, 1)}, per_business={}, timeout_s=1.0,
                          on_unavailable=lambda: None)
    key = uuid.uuid4()
    allowed = 0
    try:
        for _ in range(4200):
            try:
                await limiter.check("read", key, None)
                allowed += 1
            except RateLimited:
                pass
    finally:
        await client.aclose()
    assert allowed >= 3900  # the burst of 4,000 (plus whatever refilled meanwhile), never ~1,000
