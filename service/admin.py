"""Administrative writes (businesses, API keys): configuration, never on the request path."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass

import asyncpg

from events.sqlfiles import queries
from service.keys import SCOPES, new_key
from service.ratelimit import RateLimitConfigError, parse_rules

BUSINESS_SCOPES = SCOPES - {"admin"}


class AdminError(Exception):
    """An administrative command cannot be carried out."""


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new API key: the secret is shown once and only its hash is stored."""

    key_id: uuid.UUID
    key: str
    business: str | None
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RevokedKey:
    """A revoked API key: when it was revoked, and whether this call did it."""

    key_id: uuid.UUID
    revoked_at: dt.datetime
    already_revoked: bool


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """An API key as operators see it: never the secret, never its hash."""

    key_id: uuid.UUID
    business: str | None
    is_admin: bool
    scopes: tuple[str, ...]
    created_at: dt.datetime
    revoked_at: dt.datetime | None


async def create_business(conn: asyncpg.Connection, slug: str, name: str) -> int:
    """Create a business; its slug is its permanent URL name."""
    try:
        record = await conn.fetchrow(queries("admin")["create_business"], slug, name)
    except asyncpg.UniqueViolationError:
        raise AdminError(f"business {slug!r} already exists") from None
    except asyncpg.CheckViolationError as error:
        if error.constraint_name == "businesses_slug_format":
            raise AdminError("a slug is 1-63 lowercase letters, digits and dashes, starting with a letter or digit") from None
        raise AdminError("a name is 1-200 characters") from None
    return record["id"]


async def create_key(conn: asyncpg.Connection, *, business: str | None, scopes: list[str], admin: bool) -> CreatedKey:
    """Create an API key bound to a business with scopes, or an admin key."""
    unknown = sorted(set(scopes) - SCOPES)
    if unknown:
        raise AdminError(f"unknown scopes: {', '.join(unknown)}; known: {', '.join(sorted(BUSINESS_SCOPES))}")
    if admin and scopes:
        raise AdminError("an admin key holds every scope: give --admin without --scopes")
    if not admin and "admin" in scopes:  # it would be granted and mean nothing: admin keys are their own kind
        raise AdminError("the admin scope belongs to admin keys: create one with --admin")
    if not admin and not scopes:
        raise AdminError("a business key needs at least one scope")
    business_id = None if business is None else await business_id_of(conn, business)
    final_scopes = sorted(SCOPES) if admin else sorted(set(scopes))
    key, digest = new_key()
    key_id = uuid.uuid4()
    await conn.execute(queries("admin")["create_key"], key_id, digest, business_id, admin, final_scopes)
    return CreatedKey(key_id=key_id, key=key, business=business, scopes=tuple(final_scopes))


async def revoke_key(conn: asyncpg.Connection, key_id: uuid.UUID) -> RevokedKey:
    """Revoke an API key, keeping its row; revoking it again changes nothing."""
    sql = queries("admin")
    revoked_at = await conn.fetchval(sql["revoke_key"], key_id)
    if revoked_at is not None:
        return RevokedKey(key_id, revoked_at, already_revoked=False)
    record = await conn.fetchrow(sql["key_by_id"], key_id)
    if record is None:
        raise AdminError(f"no API key with id {key_id}")
    return RevokedKey(key_id, record["revoked_at"], already_revoked=True)


async def list_keys(conn: asyncpg.Connection, *, business: str | None = None) -> list[KeyInfo]:
    """Every API key, or those of one business, oldest first."""
    business_id = None if business is None else await business_id_of(conn, business)
    records = await conn.fetch(queries("admin")["list_keys"], business_id)
    return [KeyInfo(key_id=r["id"], business=r["slug"], is_admin=r["is_admin"], scopes=tuple(r["scopes"]),
                    created_at=r["created_at"], revoked_at=r["revoked_at"]) for r in records]


async def business_id_of(conn: asyncpg.Connection, slug: str) -> int:
    """A business's id by its slug; AdminError if there is none."""
    record = await conn.fetchrow(queries("admin")["business_by_slug"], slug)
    if record is None:
        raise AdminError(f"no business {slug!r}")
    return record["id"]


async def business_limits(conn: asyncpg.Connection, slug: str, *, rules: str, reset: bool) -> dict[str, str]:
    """A business's own rate limits, after merging `rules` in (or forgetting them all with `reset`)."""
    try:
        parsed = parse_rules(rules)
    except RateLimitConfigError as error:
        raise AdminError(str(error)) from None
    sql = queries("admin")
    current = await conn.fetchval(sql["rate_limits"], slug)
    if current is None:
        raise AdminError(f"no business {slug!r}")
    merged = {} if reset else json.loads(current)
    merged.update({route_class: str(rule) for route_class, rule in parsed.items()})
    if reset or parsed:
        await conn.execute(sql["set_rate_limits"], slug, json.dumps(merged))
    return merged
