"""The composition root: settings in, a wired ASGI app out. No I/O at import time."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg
from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.types import ASGIApp
from redis.asyncio import Redis

from events.ids import random_uuid
from events.privacy import Keyring
from events.store import EventStore
from projections.freshness import Freshness
from projections.projector import Projector
from projections.queries import ReadModels
from service import migrations
from service.collector import set_aside_startup
from service.db import create_pool, warm
from service.faults import Faults
from service.handlers import Intake
from service.health import Health
from service.http import (
    audit,
    decisions,
    erasure,
    events_api,
    ops,
    partner_callbacks,
    reads,
    seals,
    submissions,
    webhooks_api,
)
from service.http.middleware import RequestContext
from service.http.problems import problem_response
from service.keyring import starting_keyring
from service.keys import ApiKeys
from service.metrics import Metrics
from service.partners import PartnerCallbacks
from service.ratelimit import RateLimiter, parse_rules
from service.settings import Settings
from service.webhooks import secret_box

# Objects allocated (net of those freed) between collections of the young generation; CPython's
# default is 700. Requests in flight hold a few hundred tracked objects each and free nearly all of
# them by reference counting, so at 700 the collector ran every couple of requests, each time walking
# the live requests' objects: 4-5 % of the API's CPU under the bench's load, against 1-2 % at 20,000
# (gc.callbacks timing, docs/PERFORMANCE.md). Garbage in cycles still counts towards it: at most this
# many objects wait for a collection.
YOUNG_COLLECTION_THRESHOLD = 20_000


def utc_now() -> dt.datetime:
    """The service clock."""
    return dt.datetime.now(dt.UTC)


def create_app(settings: Settings, *, clock: Callable[[], dt.datetime] = utc_now,
               new_id: Callable[[], uuid.UUID] = random_uuid) -> ASGIApp:
    """The intake API, wired to its dependencies; the lifespan owns the pool."""
    metrics = Metrics()
    faults = Faults(settings.faults, environment=settings.environment)
    app = Litestar(
        route_handlers=[submissions.submit_consult, decisions.decide_consultation, reads.router, audit.router,
                        events_api.list_events, erasure.forget, ops.livez, ops.readyz, ops.metrics,
                        seals.latest_seal_route, seals.public_key_route, seals.router,
                        partner_callbacks.partner_callback, webhooks_api.router],
        lifespan=[_lifespan(settings, metrics, faults, new_id)],
        state=State({"settings": settings, "metrics": metrics, "faults": faults, "clock": clock,
                     "new_id": new_id}),
        exception_handlers={Exception: problem_response},
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(title="intake", version="1.0.0", path="/schema"),
        logging_config=None,
    )
    return RequestContext(app, metrics)


def rate_limiter(settings: Settings, client: Redis | None, metrics: Metrics) -> RateLimiter:
    """The limiter the guards consult; no Redis, no limits (Redis is transport, never truth)."""
    return RateLimiter(client, per_key=parse_rules(settings.rate_limit_per_key),
                       per_business=parse_rules(settings.rate_limit_per_business),
                       timeout_s=settings.rate_limit_timeout_ms / 1000,
                       on_unavailable=metrics.rate_limit_unavailable.inc)


def _lifespan(settings: Settings, metrics: Metrics, faults: Faults,
              new_id: Callable[[], uuid.UUID]) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """Opens the pool (and the Redis client /readyz reports on) and wires what uses them."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # The API only reads and appends in transactions; no session state to reset (service/db.py).
        pool = await create_pool(settings, application_name="intake-api", min_size=0, session_state=False,
                                 keep_idle=True)
        keyring = await starting_keyring(settings, pool, timeout_s=settings.db_connect_timeout_ms / 1000)
        # Only for /readyz's report: the API never needs Redis to accept writes.
        redis = (Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=1)
                 if settings.redis_url else None)
        limiter_redis = (Redis.from_url(settings.redis_url, socket_connect_timeout=0.2,
                                        socket_timeout=settings.rate_limit_timeout_ms / 1000)
                         if settings.redis_url else None)
        app.state.update(_wired(settings, metrics, faults, new_id, pool, keyring),
                         rate_limiter=rate_limiter(settings, limiter_redis, metrics),
                         health=Health(pool, redis, timeout_s=settings.readiness_timeout_ms / 1000,
                                       expected=migrations.load_migrations()))
        _freeze_startup_objects()
        warming = asyncio.create_task(warm(pool, settings.db_pool_min))  # cancelled below, whatever happens
        try:
            yield
        finally:
            warming.cancel()
            await pool.close()
            for client in (redis, limiter_redis):
                if client is not None:
                    await client.aclose()

    return lifespan


def _wired(settings: Settings, metrics: Metrics, faults: Faults, new_id: Callable[[], uuid.UUID],
           pool: asyncpg.Pool, keyring: Keyring) -> dict[str, object]:
    """What the controllers find in app.state, over the one pool."""
    acquire_timeout = settings.db_acquire_timeout_ms / 1000
    # No fault configured: each batch commits as one statement, with no explicit transaction to act in.
    store = EventStore(pool, keyring, acquire_timeout=acquire_timeout, fault=faults.hit if faults.enabled else None)
    return dict(
        pool=pool, acquire_timeout=acquire_timeout, keyring=keyring,  # the audit API's reads of the log
        store=store,
        projector=Projector(pool, keyring),  # only to apply a forget at once (service/erasure.py)
        intake=Intake(store, new_id=new_id, fault=faults.hit,
                      on_append=lambda t: metrics.events_appended.labels(t).inc()),
        api_keys=ApiKeys(pool, ttl_s=settings.auth_cache_ttl_s, acquire_timeout=acquire_timeout),
        read_models=ReadModels(pool, acquire_timeout=acquire_timeout),
        partner_callbacks=PartnerCallbacks(pool, secret_box(settings),
                                           acquire_timeout=acquire_timeout),
        freshness=Freshness(pool, acquire_timeout=acquire_timeout),
    )


def _freeze_startup_objects() -> None:
    """Leave what startup built (modules, routes, schemas, the pool) out of every later collection.
    Full collections otherwise walk all of it again and again: 22-26 ms each, about twice a second
    under the bench's load at 1 worker, stalling every request in flight (docs/PERFORMANCE.md).
    Then collect the young generation less often (see YOUNG_COLLECTION_THRESHOLD)."""
    set_aside_startup(YOUNG_COLLECTION_THRESHOLD)
