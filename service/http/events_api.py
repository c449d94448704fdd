"""GET /v1/events: the global log for admins, in an order that never skips a late commit."""

from __future__ import annotations

import msgspec
from litestar import Request, Response, get

from service.http.auth import requires
from service.http.problems import InvalidParameter

MAX_LIMIT = 1000
MAX_BIGINT = 2**63 - 1  # larger values cannot be a position; rejecting them avoids a driver error (500)
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


def _int_param(request: Request, name: str, default: int, low: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= MAX_BIGINT:
        raise InvalidParameter(f"'{name}' must be an integer from {low} to {MAX_BIGINT}.")
    return int(raw)


@get("/v1/events", guards=[requires("admin")], summary="Read the global event log", tags=["audit"])
async def list_events(request: Request) -> Response[bytes]:
    """Events after position `after`, at most `limit` (clamped to 1000); follow `next_after`."""
    after = _int_param(request, "after", 0, 0)
    limit = min(_int_param(request, "limit", 100, 1), MAX_LIMIT)
    events = await request.app.state.store.read_all(after=after, limit=limit)
    items = [EventOut(position=e.position, event_id=str(e.event_id), stream_id=e.stream_id,
                      type=f"{e.event_type}.v{e.schema_version}", version=e.stream_version,
                      recorded_at=e.recorded_at.isoformat(), data=msgspec.Raw(msgspec.json.encode(e.data)),
                      metadata=e.metadata) for e in events]
    next_after = events[-1].position if events else after
    return Response(_ENCODER.encode({"events": items, "next_after": next_after}), media_type="application/json")
