"""Administrative writes (businesses, API keys): configuration, never on the request path."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from events.sqlfiles import queries
from service.http.auth import SCOPES, new_key


class AdminError(Exception):
    """An administrative command cannot be carried out."""


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new API key: the secret is shown once and only its hash is stored."""

    key_id: uuid.UUID
    key: str
    business: str | None
    scopes: tuple[str, ...]


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
        raise AdminError(f"unknown scopes: {', '.join(unknown)}; known: {', '.join(sorted(SCOPES))}")
    business_id = None
    if business is not None:
        business_id = await conn.fetchval("SELECT id FROM businesses WHERE slug = $1", business)
        if business_id is None:
            raise AdminError(f"no business {business!r}")
    final_scopes = sorted(SCOPES) if admin else sorted(set(scopes))
    key, digest = new_key()
    key_id = uuid.uuid4()
    await conn.execute(queries("admin")["create_key"], key_id, digest, business_id, admin, final_scopes)
    return CreatedKey(key_id=key_id, key=key, business=business, scopes=tuple(final_scopes))
