"""The admin API for outbound webhooks (scope `admin`: admin keys only): endpoints, deliveries,
redelivery. The work is service/webhooks.py's, shared with `intake webhooks …`."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec
from litestar import Request, Router, get, post
from msgspec import Meta

from service import webhooks
from service.http import params
from service.http.auth import requires
from service.http.openapi import documented, query
from service.http.problems import InvalidParameter, NotFound
from service.http.schemas import check_json_content_type, decode_body
from service.keys import Tenant

WebhookType = Literal["consult.submitted", "consult.approved", "consult.rejected", "partner.status_reported"]
FAILED = query("failed", {"type": "string", "enum": ["true", "false"]}, "Only dead-lettered or failing deliveries.")


class EndpointIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """POST /v1/businesses/{slug}/webhooks."""

    url: Annotated[str, Meta(min_length=1, max_length=2000)]
    events: Annotated[tuple[WebhookType, ...], Meta(min_length=1, max_length=4)]


class EndpointView(msgspec.Struct, frozen=True, kw_only=True):
    """An endpoint (never its secret)."""

    endpoint_id: uuid.UUID
    url: str
    events: list[str]
    created_at: dt.datetime
    disabled_at: dt.datetime | None


class SecretView(msgspec.Struct, frozen=True, kw_only=True):
    """A signing secret, shown this once."""

    endpoint_id: uuid.UUID
    secret: str


class EndpointList(msgspec.Struct, frozen=True):
    """A business's endpoints, oldest first."""

    items: list[EndpointView]


class RedeliveredView(msgspec.Struct, frozen=True):
    """The deliveries queued again."""

    redelivered: list[int]


def _tenant(request: Request) -> Tenant:
    return request.state.tenant


async def _conn_do(request: Request, work):  # type: ignore[no-untyped-def]
    state = request.app.state
    async with state.pool.acquire(timeout=state.acquire_timeout) as conn:
        return await work(conn)


@post("/", status_code=201, summary="Register a webhook endpoint (its secret is shown once)",
      operation_class=documented(body=EndpointIn))
async def add_endpoint(request: Request) -> SecretView:
    """See docs/API.md, section 8."""
    check_json_content_type(request.headers.get("content-type"))
    body = decode_body(await request.body(), EndpointIn)
    settings = request.app.state.settings
    made = await _conn_do(request, lambda c: webhooks.add_endpoint(c, settings, _tenant(request).business_id,
                                                                  body.url, body.events))
    return SecretView(endpoint_id=made.endpoint_id, secret=made.secret)


@get("/", summary="List webhook endpoints")
async def list_endpoints(request: Request) -> EndpointList:
    """Every endpoint of the business, oldest first."""
    found = await _conn_do(request, lambda c: webhooks.list_endpoints(c, _tenant(request).business_id))
    return EndpointList([EndpointView(endpoint_id=e.endpoint_id, url=e.url, events=e.events,
                                      created_at=e.created_at, disabled_at=e.disabled_at) for e in found])


@post("/{endpoint_id:str}/disable", status_code=200, summary="Stop delivering to an endpoint")
async def disable_endpoint(request: Request) -> dict[str, str]:
    """Its pending deliveries wait; nothing is deleted."""
    endpoint_id = params.uuid_or_404(request, "endpoint_id", "webhook endpoint")
    at = await _conn_do(request, lambda c: webhooks.disable_endpoint(c, endpoint_id, _tenant(request).business_id))
    return {"endpoint_id": str(endpoint_id), "disabled_at": at.isoformat()}


@post("/{endpoint_id:str}/rotate-secret", status_code=200, summary="Rotate an endpoint's signing secret")
async def rotate_secret(request: Request) -> SecretView:
    """A new secret, shown once; deliveries carry the previous one's signature too for 24 hours."""
    endpoint_id = params.uuid_or_404(request, "endpoint_id", "webhook endpoint")
    settings = request.app.state.settings
    made = await _conn_do(request, lambda c: webhooks.rotate_secret(c, settings, endpoint_id,
                                                                    _tenant(request).business_id))
    return SecretView(endpoint_id=made.endpoint_id, secret=made.secret)


@get("/deliveries", summary="Webhook deliveries, newest first, with every attempt",
     operation_class=documented(parameters=(FAILED,)))
async def list_deliveries(request: Request) -> dict[str, object]:
    """Status, latency, error type and next attempt of every attempt; `?failed=true` for failures only."""
    failed = request.query_params.get("failed", "false")
    if failed not in ("true", "false"):
        raise InvalidParameter("'failed' must be true or false.")
    items = await _conn_do(request, lambda c: webhooks.deliveries(c, _tenant(request).business_id,
                                                                  failed=failed == "true"))
    return {"items": items}


@post("/deliveries/{delivery_id:str}/redeliver", status_code=200, summary="Send a delivery again")
async def redeliver(request: Request) -> RedeliveredView:
    """The same webhook-id, a fresh schedule."""
    raw = request.path_params["delivery_id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise NotFound("No such webhook delivery.")
    found = await _conn_do(request, lambda c: webhooks.redeliver(c, _tenant(request).business_id,
                                                                 delivery_id=int(raw)))
    return RedeliveredView(found)


router = Router(path="/v1/businesses/{slug:str}/webhooks", guards=[requires("admin")], tags=["webhooks"],
                route_handlers=[add_endpoint, list_endpoints, disable_endpoint, rotate_secret, list_deliveries,
                                redeliver])
