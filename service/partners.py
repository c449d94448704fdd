"""Partners and their signing secrets: verifying a callback (the API, as the app role) and the
admin commands that add, rotate, list and remove them (the CLI, as the owner).

Secrets are shown once, when made, and stored encrypted (projections/secretbox.py says why not hashed).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from events.errors import translating_driver_errors
from events.sqlfiles import queries
from projections import signatures
from projections.secretbox import SecretBox
from service.admin import AdminError, business_id_of
from service.keys import SLUG

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")  # as partners_name_format (migration 0012) allows


class UnknownPartner(signatures.SignatureRejected):
    """The webhook's signature does not match any of the partner's current secrets."""


@dataclass(frozen=True, slots=True)
class VerifiedCallback:
    """A callback whose signature one of the partner's secrets made, within the time tolerance."""

    business_id: int
    partner: str
    webhook_id: str
    sent_at: dt.datetime


@dataclass(frozen=True, slots=True)
class PartnerSecret:
    """A new signing secret: shown once, stored encrypted."""

    business: str
    partner: str
    secret_id: uuid.UUID
    secret: str


@dataclass(frozen=True, slots=True)
class PartnerInfo:
    """A partner as operators see it: its secrets' ids and ages, never the secrets."""

    business: str
    partner: str
    created_at: dt.datetime
    secrets: tuple[tuple[uuid.UUID, dt.datetime], ...]


class PartnerCallbacks:
    """Verifies partners' signed callbacks against their current secrets."""

    def __init__(self, pool: asyncpg.Pool, box: SecretBox, *, acquire_timeout: float) -> None:
        self._pool = pool
        self._box = box
        self._acquire_timeout = acquire_timeout

    async def verify(self, slug: str, partner: str, headers: Mapping[str, str], body: bytes,
                     now: dt.datetime) -> VerifiedCallback:
        """The callback's sender, or an exception saying why it is not to be believed.

        An unknown business or partner fails exactly like a wrong signature, so callers cannot
        probe which partners exist."""
        rows: list[asyncpg.Record] = []
        if SLUG.fullmatch(slug) and NAME.fullmatch(partner):
            with translating_driver_errors():
                async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                    rows = await conn.fetch(queries("partners")["partner_secrets"], slug, partner)
        keys = [signatures.secret_key(self._box.open(r["sealed"], str(r["id"]))) for r in rows]
        webhook_id = headers.get("webhook-id")
        sent_at = signatures.verify(keys, webhook_id, headers.get("webhook-timestamp"),
                                    headers.get("webhook-signature"), body, now=int(now.timestamp()))
        if not rows:  # unreachable (no key verifies anything), but never let an unknown partner through
            raise UnknownPartner(UnknownPartner.__doc__)
        assert webhook_id is not None  # verify() refuses a missing one
        return VerifiedCallback(rows[0]["business_id"], partner, webhook_id, dt.datetime.fromtimestamp(sent_at, dt.UTC))


async def add_partner(conn: asyncpg.Connection, box: SecretBox, business: str, name: str) -> PartnerSecret:
    """Register a partner of a business, with its first secret."""
    if not NAME.fullmatch(name):
        raise AdminError("a partner name is 1-63 lowercase letters, digits, dashes and underscores")
    business_id = await business_id_of(conn, business)
    async with conn.transaction():
        try:
            partner_id = await conn.fetchval(queries("partners")["create_partner"], business_id, name)
        except asyncpg.UniqueViolationError:
            raise AdminError(f"business {business!r} already has a partner {name!r}") from None
        return await _new_secret(conn, box, business, name, partner_id)


async def rotate_partner(conn: asyncpg.Connection, box: SecretBox, business: str, name: str) -> PartnerSecret:
    """Add a secret; the older ones keep verifying until removed (`partners remove --secret`)."""
    return await _new_secret(conn, box, business, name, await _partner_id(conn, business, name))


async def list_partners(conn: asyncpg.Connection, business: str | None) -> list[PartnerInfo]:
    """Every partner, or one business's."""
    business_id = None if business is None else await business_id_of(conn, business)
    rows = await conn.fetch(queries("partners")["list_partners"], business_id)
    return [PartnerInfo(r["slug"], r["name"], r["created_at"],
                        tuple(zip(r["secret_ids"], r["secret_created_at"], strict=True))) for r in rows]


async def remove_partner(conn: asyncpg.Connection, business: str, name: str, secret_id: uuid.UUID | None) -> str:
    """Remove one secret of a partner (not its last), or the partner and all its secrets."""
    sql = queries("partners")
    partner_id = await _partner_id(conn, business, name)
    async with conn.transaction():
        if secret_id is None:
            await conn.execute(sql["remove_partner"], partner_id)
            return f"removed partner {name!r} of {business!r}"
        if await conn.fetchval(sql["remove_partner_secret"], partner_id, secret_id) is None:
            raise AdminError(f"partner {name!r} has no secret {secret_id}")
        if await conn.fetchval(sql["count_partner_secrets"], partner_id) == 0:
            raise AdminError("that is the partner's last secret: rotate first, or remove the partner")
    return f"removed secret {secret_id} of partner {name!r}"


async def _partner_id(conn: asyncpg.Connection, business: str, name: str) -> int:
    partner_id = await conn.fetchval(queries("partners")["partner_id"], await business_id_of(conn, business), name)
    if partner_id is None:
        raise AdminError(f"business {business!r} has no partner {name!r}")
    return partner_id


async def _new_secret(conn: asyncpg.Connection, box: SecretBox, business: str, name: str,
                      partner_id: int) -> PartnerSecret:
    secret, secret_id = signatures.new_secret(), uuid.uuid4()
    await conn.execute(queries("partners")["add_partner_secret"], secret_id, partner_id,
                       box.seal(secret, str(secret_id)))
    return PartnerSecret(business, name, secret_id, secret)
