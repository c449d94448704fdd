"""Businesses and their API keys, created the way an operator would (service.admin)."""

from __future__ import annotations

import dataclasses

import asyncpg

from service import admin

# Every scope a business key can hold; a tenant's full key gets them all.
ALL_SCOPES = ["submissions:write", "consultations:read", "consultations:decide", "audit:read"]


@dataclasses.dataclass(frozen=True)
class TenantKeys:
    """A business and API keys for it."""

    slug: str
    key: str  # every business scope
    read_only_key: str


async def make_tenant(conn: asyncpg.Connection, slug: str) -> TenantKeys:
    """Create a business with a full key and a read-only key."""
    await admin.create_business(conn, slug, slug.title())
    full = await admin.create_key(conn, business=slug, scopes=ALL_SCOPES, admin=False)
    read = await admin.create_key(conn, business=slug, scopes=["consultations:read"], admin=False)
    return TenantKeys(slug, full.key, read.key)
