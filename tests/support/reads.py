"""Reading a tenant's read API (lists, by-id views, read-your-writes) as a client would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx

from service.settings import Settings
from tests.support.servers import running_api
from tests.support.tenants import TenantKeys

BASE = "/v1/businesses/{slug}"
PROBLEMS = "https://intake.dev/problems/"
LISTS = ["/consultations", "/patients", "/approvals"]


@asynccontextmanager
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the real API, served in-process for as long as the block runs."""
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        yield client


def read(client: httpx.AsyncClient, tenant: TenantKeys, path: str, key: str | None = None, **params: Any):
    """GET one of the tenant's read URLs with its read-only key (a coroutine, so tests can run it as a task)."""
    return client.get(BASE.format(slug=tenant.slug) + path, params=params,
                      headers={"Authorization": f"Bearer {key or tenant.read_only_key}"})


async def ok(response_coroutine) -> Any:
    """The JSON body of a read that must answer 200."""
    response = await response_coroutine
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    """The response is the given problem+json; its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["type"], body["status"]) == (PROBLEMS + slug, status)
    return body


async def walk(client: httpx.AsyncClient, tenant: TenantKeys, path: str, **params: Any) -> list[list[dict]]:
    """Every page of a list, following next_cursor."""
    pages, cursor = [], None
    while True:
        body = await ok(read(client, tenant, path, **params, **({"cursor": cursor} if cursor else {})))
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


async def business_id(db: asyncpg.Connection, tenant: TenantKeys) -> int:
    """The tenant's id, for rows written straight into a read table."""
    return await db.fetchval("SELECT id FROM businesses WHERE slug = $1", tenant.slug)
