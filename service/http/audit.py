"""The audit API for one business (docs/API.md, section 5): a consultation's history, from the log."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from litestar import Request, Router, get

from events.replay import consultation_history
from events.types import StoredEvent
from service.http import params
from service.http.auth import requires
from service.http.openapi import documented
from service.http.problems import NotFound
from service.keys import Tenant


class HistoryEvent(msgspec.Struct, frozen=True):
    """One event of a consultation's history. `version` is the event's place in its own stream
    (`stream_id`): a deduplicated submission lives in the stream of the request it answered."""

    position: int
    event_id: str
    stream_id: str
    type: str
    version: int
    recorded_at: dt.datetime
    data: dict[str, Any]
    metadata: dict[str, Any]


def _history_event(event: StoredEvent) -> HistoryEvent:
    return HistoryEvent(position=event.position, event_id=str(event.event_id), stream_id=event.stream_id,
                        type=f"{event.event_type}.v{event.schema_version}", version=event.stream_version,
                        recorded_at=event.recorded_at, data=msgspec.to_builtins(event.data),
                        metadata=msgspec.json.decode(event.metadata))


@get("/consultations/{consultation_id:str}/history", summary="A consultation's events, in log order",
     operation_class=documented())
async def consultation_history_route(request: Request) -> list[HistoryEvent]:
    """Its submission, its decision, and the submissions deduplicated onto it; 404 if this business
    has no such consultation."""
    consultation_id = params.uuid_or_404(request, "consultation_id", "consultation")
    tenant: Tenant = request.state.tenant
    events = await consultation_history(request.app.state.pool, request.app.state.keyring, tenant.business_id, consultation_id,
                                        acquire_timeout=request.app.state.acquire_timeout)
    if not events:
        raise NotFound("No such consultation for this business.")
    return [_history_event(event) for event in events]


router = Router(
    "/v1/businesses/{slug:str}",
    route_handlers=[consultation_history_route],
    guards=[requires("audit:read")],
    tags=["audit"],
)
