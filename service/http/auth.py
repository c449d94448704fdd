"""API keys: hashed at rest, bound to one business (or admin), carrying scopes.

Lookups are cached for AUTH_CACHE_TTL_S seconds, so a revoked key stops working
within that window; unknown keys are never cached, so a new key works at once.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from events.errors import translating_driver_errors
from events.sqlfiles import queries
from service.http.problems import Forbidden, NotFound, Unauthenticated

SCOPES = frozenset({"submissions:write", "consultations:read", "consultations:decide", "audit:read", "admin"})
KEY_PREFIX = "ik_"
_CACHE_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a key of one business, or an admin key."""

    key_id: uuid.UUID
    business_id: int | None
    business_slug: str | None
    scopes: frozenset[str]
    is_admin: bool

    @property
    def actor(self) -> str:
        """How events record this caller."""
        return f"api_key:{self.key_id}"


@dataclass(frozen=True, slots=True)
class Tenant:
    """The business a request acts on, after authorization."""

    business_id: int
    slug: str
    principal: Principal


def new_key() -> tuple[str, bytes]:
    """A fresh API key and the hash that is stored for it."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hash_key(key)


def hash_key(key: str) -> bytes:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    """Authenticates bearer keys and resolves businesses, with a short-lived cache."""

    def __init__(self, pool: asyncpg.Pool, *, ttl_s: float, acquire_timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._pool = pool
        self._ttl = ttl_s
        self._acquire_timeout = acquire_timeout
        self._clock = clock
        self._keys: dict[bytes, tuple[float, Principal]] = {}
        self._businesses: dict[str, int] = {}  # businesses are never deleted or renamed
        self._sql = queries("admin")

    async def authenticate(self, authorization: str | None) -> Principal:
        """The caller behind an `Authorization: Bearer <key>` header, or 401."""
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.startswith(KEY_PREFIX) or len(key) > 200:
            raise Unauthenticated("Send a valid API key as 'Authorization: Bearer <key>'.")
        digest = hash_key(key.strip())
        cached = self._keys.get(digest)
        if cached and cached[0] > self._clock():
            return cached[1]
        record = await self._fetchrow("authenticate", digest)
        if record is None:
            raise Unauthenticated("Send a valid API key as 'Authorization: Bearer <key>'.")
        principal = Principal(key_id=record["id"], business_id=record["business_id"],
                              business_slug=record["slug"], scopes=frozenset(record["scopes"]),
                              is_admin=record["is_admin"])
        if len(self._keys) >= _CACHE_LIMIT:
            self._keys.clear()
        self._keys[digest] = (self._clock() + self._ttl, principal)
        return principal

    async def authorize(self, principal: Principal, slug: str, scope: str) -> Tenant:
        """The business `slug` if this caller may use `scope` on it: else 403 (or 404 for admins)."""
        if principal.is_admin:
            business_id = await self._business_id(slug)
            if business_id is None:
                raise NotFound("No such business.")
            return Tenant(business_id, slug, principal)
        # A business key learns nothing about other businesses, existing or not.
        if principal.business_slug != slug or scope not in principal.scopes:
            raise Forbidden("This API key may not do that on this business.")
        assert principal.business_id is not None
        return Tenant(principal.business_id, slug, principal)

    async def _business_id(self, slug: str) -> int | None:
        if slug not in self._businesses:
            record = await self._fetchrow("business_by_slug", slug)
            if record is None:
                return None
            self._businesses[slug] = record["id"]
        return self._businesses[slug]

    async def _fetchrow(self, name: str, *args: object) -> asyncpg.Record | None:
        with translating_driver_errors():
            async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                return await conn.fetchrow(self._sql[name], *args)


def requires(scope: str) -> Callable[[ASGIConnection, BaseRouteHandler], object]:
    """A guard: the request's API key must hold `scope` on the business in the path."""
    assert scope in SCOPES, scope

    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        keys: ApiKeys = connection.app.state.api_keys
        principal = await keys.authenticate(connection.headers.get("authorization"))
        slug = connection.path_params.get("slug")
        if slug is None:  # routes outside any business are for admin keys only
            if not principal.is_admin:
                raise Forbidden("This API key may not do that.")
            connection.state.principal = principal
            return
        connection.state.tenant = await keys.authorize(principal, slug, scope)

    return guard
