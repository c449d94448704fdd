"""Submitting and deciding consults through the real HTTP API, as a client would."""

from __future__ import annotations

from typing import Any

import httpx

from service.settings import Settings
from tests.support.payloads import headers, submission
from tests.support.servers import running_api
from tests.support.tenants import TenantKeys

SUBMIT = "/v1/businesses/{slug}/consult-submissions"
DECIDE = "/v1/businesses/{slug}/consultations/{consultation_id}/decision"


async def submit(client: httpx.AsyncClient, tenant: TenantKeys, **overrides: Any) -> dict[str, Any]:
    """A new pending consultation; its 202 body."""
    response = await client.post(SUBMIT.format(slug=tenant.slug), json=submission(**overrides),
                                 headers=headers(tenant.key))
    assert response.status_code == 202, response.text
    return response.json()


def decide(client: httpx.AsyncClient, slug: str, consultation_id: object, body: dict[str, Any], key: str,
           idempotency_key: str | None = None):
    """POST a decision (a coroutine, so that tests can gather many)."""
    return client.post(DECIDE.format(slug=slug, consultation_id=consultation_id), json=body,
                       headers=headers(key, idempotency_key))


async def submit_many(settings: Settings, key: str, bodies: list[dict[str, Any]],
                      slug: str = "acme") -> list[httpx.Response]:
    """POST each body in turn to a server started for the purpose; every answer, whatever its status."""
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        return [await client.post(SUBMIT.format(slug=slug), json=b, headers=headers(key)) for b in bodies]
