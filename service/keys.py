"""API keys: hashed at rest, bound to one business (or admin), carrying scopes.

Used by the CLI (creating keys) and by the HTTP guard (authenticating them).
Lookups are cached for AUTH_CACHE_TTL_S seconds, so a revoked key stops working
within that window; unknown keys are never cached, so a new key works at once.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import asyncpg

from events.errors import translating_driver_errors
from events.sqlfiles import queries
from service.ratelimit import RateLimitConfigError, Rule, rules_from

SCOPES = frozenset({"submissions:write", "consultations:read", "consultations:decide", "audit:read", "admin"})
KEY_PREFIX = "ik_"
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # as businesses_slug_format (migration 0001) allows
MAX_KEY_LENGTH = 200
_CACHE_LIMIT = 10_000


class InvalidApiKey(Exception):
    """Send a valid API key as 'Authorization: Bearer <key>'."""


class NotPermitted(Exception):
    """This API key may not do that on this business."""


class UnknownBusiness(Exception):
    """No such business."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a key of one business, or an admin key."""

    key_id: uuid.UUID
    business_id: int | None
    business_slug: str | None
    scopes: frozenset[str]
    is_admin: bool
    business_rate_limits: Mapping[str, Rule] = field(default_factory=dict)  # its business's own limits

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


def _business_rules(text: str | None) -> dict[str, Rule]:
    """A business's own limits as stored; a value the CLI would not have written is ignored, not fatal."""
    if not text:
        return {}
    try:
        return rules_from(json.loads(text).items())
    except (RateLimitConfigError, ValueError, AttributeError):
        return {}


def new_key() -> tuple[str, bytes]:
    """A fresh API key and the hash that is stored for it."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hash_key(key)


def hash_key(key: str) -> bytes:
    """The stored form of a key. Keys are 256-bit random, so a slow hash would add nothing."""
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
        """The caller behind an `Authorization: Bearer <key>` header, or InvalidApiKey."""
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.startswith(KEY_PREFIX) or len(key) > MAX_KEY_LENGTH:
            raise InvalidApiKey(InvalidApiKey.__doc__)
        digest = hash_key(key.strip())
        cached = self._keys.get(digest)
        if cached and cached[0] > self._clock():
            return cached[1]
        record = await self._fetchrow("authenticate", digest)
        if record is None:
            raise InvalidApiKey(InvalidApiKey.__doc__)
        principal = Principal(key_id=record["id"], business_id=record["business_id"],
                              business_slug=record["slug"], scopes=frozenset(record["scopes"]),
                              is_admin=record["is_admin"],
                              business_rate_limits=_business_rules(record["rate_limits"]))
        if len(self._keys) >= _CACHE_LIMIT:
            self._keys.clear()
        self._keys[digest] = (self._clock() + self._ttl, principal)
        return principal

    async def authorize(self, principal: Principal, slug: str, scope: str) -> Tenant:
        """The business `slug` if this caller may use `scope` on it: else NotPermitted
        (or UnknownBusiness, for admins only)."""
        if principal.is_admin:
            business_id = await self._business_id(slug)
            if business_id is None:
                raise UnknownBusiness(UnknownBusiness.__doc__)
            return Tenant(business_id, slug, principal)
        # A business key learns nothing about other businesses, existing or not.
        if principal.business_slug != slug or scope not in principal.scopes:
            raise NotPermitted(NotPermitted.__doc__)
        assert principal.business_id is not None
        return Tenant(principal.business_id, slug, principal)

    async def _business_id(self, slug: str) -> int | None:
        if not SLUG.fullmatch(slug):  # names no business; and a NUL could not even reach PostgreSQL
            return None
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
