"""GET /v1/events: the global log for admins, in an order that never skips a late commit."""

from __future__ import annotations

import msgspec
from litestar import Request, Response, get

from service.http import params
from service.http.auth import requires
from service.http.openapi import AFTER, LIMIT, documented, query

MAX_LIMIT = 1000
_ENCODER = msgspec.json.Encoder()


class EventOut(msgspec.Struct, frozen=True):
    """One event as the audit API shows it."""

    position: int
    event_id: str
    stream_id: str
    type: str
    version: int
    recorded_at: str
    data: msgspec.Raw
    metadata: msgspec.Raw


@get("/v1/events", guards=[requires("admin")], summary="Read the global event log", tags=["audit"],
     operation_class=documented(parameters=(AFTER, query("limit", LIMIT["schema"], "At most this many (clamped to 1000)."))))
async def list_events(request: Request) -> Response[bytes]:
    """Events after position `after`, at most `limit` (clamped to 1000); follow `next_after`."""
    after = params.integer(request, "after", low=0) or 0
    limit = min(params.integer(request, "limit", low=1) or 100, MAX_LIMIT)
    events = await request.app.state.store.read_all(after=after, limit=limit)
    # `type` is the tag as recorded (its schema version, forever); `data` is the event as this
    # release reads it, upcast to the current version (docs/API.md, section 5).
    items = [EventOut(position=e.position, event_id=str(e.event_id), stream_id=e.stream_id,
                      type=f"{e.event_type}.v{e.schema_version}", version=e.stream_version,
                      recorded_at=e.recorded_at.isoformat(), data=msgspec.Raw(msgspec.json.encode(e.data)),
                      metadata=e.metadata) for e in events]
    next_after = events[-1].position if events else after
    return Response(_ENCODER.encode({"events": items, "next_after": next_after}), media_type="application/json")
