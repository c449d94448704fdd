"""Outbound webhooks as operators and admin keys manage them: endpoints (add, list, disable,
rotate the secret), deliveries and their attempts, redelivery. Used by the CLI and the admin HTTP
API alike; the worker's side is projections/fanout.py and projections/deliveries.py."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from events.sqlfiles import queries
from projections import signatures, webhook_policy
from projections.deliveries import DeliveryConfig
from projections.secretbox import SecretBox, SecretsKeyError
from projections.webhook_bodies import WEBHOOK_TYPES
from service.settings import Settings, SettingsError, inline_or_file

PREVIOUS_SECRET_GRACE_S = 24 * 3600  # after a rotation, deliveries carry both signatures this long
MAX_LISTED = 1000


class WebhookError(Exception):
    """The webhook request cannot be carried out."""


class UnknownWebhook(WebhookError):
    """No such webhook endpoint or delivery."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint as listed: never its secret."""

    endpoint_id: uuid.UUID
    business: str
    url: str
    events: list[str]
    created_at: dt.datetime
    disabled_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class NewSecret:
    """An endpoint's signing secret, shown once when made."""

    endpoint_id: uuid.UUID
    secret: str


def delivery_config(settings: Settings) -> DeliveryConfig:
    """The worker's delivery settings."""
    return DeliveryConfig(
        timeout_s=settings.webhook_timeout_ms / 1000, endpoint_concurrency=settings.webhook_endpoint_concurrency,
        retry_base_s=settings.webhook_retry_base_ms / 1000, max_attempts=settings.webhook_max_attempts,
        https_only=settings.environment != "development",
        allowed_networks=webhook_policy.networks(settings.webhook_allowed_networks))


def secret_box(settings: Settings) -> SecretBox:
    """The box signing secrets are sealed in: SECRETS_KEY, or the file SECRETS_KEY_FILE names."""
    try:
        return SecretBox(inline_or_file(settings.secrets_key, settings.secrets_key_file, file_setting="SECRETS_KEY_FILE"))
    except SecretsKeyError as error:
        raise SettingsError(str(error)) from None


async def add_endpoint(conn: asyncpg.Connection, settings: Settings, business_id: int, url: str,
                       events: Sequence[str]) -> NewSecret:
    """Register an endpoint for some of a business's event types; its secret is returned once."""
    unknown = sorted(set(events) - set(WEBHOOK_TYPES))
    if unknown or not events:
        raise WebhookError(f"events must be some of {', '.join(WEBHOOK_TYPES)}")
    config = delivery_config(settings)
    try:
        host, port = webhook_policy.check_url(url, https_only=config.https_only)
        webhook_policy.check_addresses(await webhook_policy.resolved_addresses(host, port), config.allowed_networks)
    except webhook_policy.EndpointRefused as refused:
        raise WebhookError(str(refused)) from None
    endpoint_id, secret = uuid.uuid4(), signatures.new_secret()
    await conn.execute(queries("webhooks")["create_endpoint"], endpoint_id, business_id, url,
                       sorted(set(events)), secret_box(settings).seal(secret, str(endpoint_id)))
    return NewSecret(endpoint_id, secret)


async def list_endpoints(conn: asyncpg.Connection, business_id: int | None) -> list[Endpoint]:
    """Every endpoint, or one business's, oldest first."""
    rows = await conn.fetch(queries("webhooks")["list_endpoints"], business_id)
    return [Endpoint(r["id"], r["slug"], r["url"], list(r["event_types"]), r["created_at"], r["disabled_at"])
            for r in rows]


async def disable_endpoint(conn: asyncpg.Connection, endpoint_id: uuid.UUID, business_id: int | None) -> dt.datetime:
    """Stop delivering to an endpoint (its pending deliveries wait; nothing is deleted)."""
    disabled_at = await conn.fetchval(queries("webhooks")["disable_endpoint"], endpoint_id, business_id)
    if disabled_at is None:
        raise UnknownWebhook(UnknownWebhook.__doc__)
    return disabled_at


async def rotate_secret(conn: asyncpg.Connection, settings: Settings, endpoint_id: uuid.UUID,
                        business_id: int | None) -> NewSecret:
    """A new secret; deliveries are signed with both for PREVIOUS_SECRET_GRACE_S."""
    sql, box = queries("webhooks"), secret_box(settings)
    async with conn.transaction():
        current = await conn.fetchval(sql["sealed_secret"], endpoint_id, business_id)
        if current is None:
            raise UnknownWebhook(UnknownWebhook.__doc__)
        secret = signatures.new_secret()
        await conn.execute(sql["rotate_endpoint_secret"], endpoint_id, business_id, current,
                           PREVIOUS_SECRET_GRACE_S, box.seal(secret, str(endpoint_id)))
    return NewSecret(endpoint_id, secret)


async def deliveries(conn: asyncpg.Connection, business_id: int | None, *, failed: bool,
                     limit: int = 100) -> list[dict[str, object]]:
    """Deliveries, newest first, each with its attempts: status, latency, error type, next attempt."""
    sql = queries("webhooks")
    rows = await conn.fetch(sql["list_deliveries"], business_id, failed, min(limit, MAX_LISTED))
    listed = []
    for row in rows:
        attempts = [dict(a) for a in await conn.fetch(sql["list_attempts"], row["id"])]
        listed.append({**dict(row), "attempts": attempts})
    return listed


async def redeliver(conn: asyncpg.Connection, business_id: int | None, *, delivery_id: int | None = None,
                    since: dt.datetime | None = None) -> list[int]:
    """Send a delivery again (same webhook-id, a fresh schedule), or every settled one of events since a time."""
    sql = queries("webhooks")
    if delivery_id is not None:
        found = await conn.fetch(sql["redeliver"], delivery_id, business_id)
        if not found:
            raise UnknownWebhook(UnknownWebhook.__doc__)
    else:
        found = await conn.fetch(sql["redeliver_since"], since, business_id)
    return [r["id"] for r in found]
