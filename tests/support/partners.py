"""Partners and their signed callbacks, as a partner's own servers would send them."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import asyncpg
import httpx

from projections import signatures
from projections.secretbox import SecretBox
from service import partners
from service.settings import Settings
from service.webhooks import secret_box

CALLBACK = "/v1/businesses/{slug}/partners/{partner}/callbacks"


def box(settings: Settings) -> SecretBox:
    """The secret box the app under test uses."""
    return secret_box(settings)


async def add_partner(db: asyncpg.Connection, settings: Settings, slug: str = "acme",
                      name: str = "pharmacy") -> partners.PartnerSecret:
    """Register a partner as `intake partners add` does; its first secret."""
    return await partners.add_partner(db, box(settings), slug, name)


def signed(secret: str, body: bytes, *, webhook_id: str | None = None, at: int | None = None) -> dict[str, str]:
    """Standard Webhooks headers for `body`, signed with `secret`."""
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    at = int(time.time()) if at is None else at
    return {"webhook-id": webhook_id, "webhook-timestamp": str(at), "content-type": "application/json",
            "webhook-signature": signatures.sign(signatures.secret_key(secret), webhook_id, at, body)}


def report(client: httpx.AsyncClient, secret: str, consultation_id: object, status: str = "accepted", *,
           slug: str = "acme", partner: str = "pharmacy", webhook_id: str | None = None, at: int | None = None,
           extra: dict[str, Any] | None = None):
    """POST a signed status callback (a coroutine, so tests can gather many)."""
    body = json.dumps({"consultation_id": str(consultation_id), "status": status, **(extra or {})}).encode()
    return client.post(CALLBACK.format(slug=slug, partner=partner), content=body,
                       headers=signed(secret, body, webhook_id=webhook_id, at=at))
