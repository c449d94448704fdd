"""`?as_of=TIME` on a consultation's read: the consultation as it stood at TIME, folded from the
log (projections/as_of.py) rather than read from the projection.

Shared request code, not a controller: the read route (service/http/reads.py) hands over when the
parameter is present. It reads the log, so the key needs `audit:read` besides the route's
`consultations:read`: a read-only key sees the present, not the past.
"""

from __future__ import annotations

import datetime as dt
import uuid

from litestar import Request

from events.replay import parse_time
from projections.as_of import AsOfInFuture, consultation_as_of
from projections.queries import ConsultationView
from service.http.openapi import query
from service.http.problems import Forbidden, InvalidParameter, NotFound
from service.keys import Tenant

AS_OF = query("as_of", {"type": "string", "format": "date-time"},
              "The consultation as it stood at this time (RFC 3339 with offset), from the log; needs `audit:read`.")


def time_parameter(request: Request, name: str) -> dt.datetime | None:
    """An optional RFC 3339 time with offset; 400 naming the parameter, never quoting it."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return parse_time(raw)
    except ValueError:
        raise InvalidParameter(f"'{name}' must be an RFC 3339 time with an offset.") from None


def require_audit(tenant: Tenant) -> None:
    """403 unless the key may read the log of this business."""
    if not (tenant.principal.is_admin or "audit:read" in tenant.principal.scopes):
        raise Forbidden("This API key may not read the log (it needs audit:read).")


async def consultation_at(request: Request, consultation_id: uuid.UUID, at: dt.datetime) -> ConsultationView:
    """The consultation at `at`; 404 if this business had none such yet."""
    tenant: Tenant = request.state.tenant
    require_audit(tenant)
    try:
        found = await consultation_as_of(request.app.state.pool, request.app.state.keyring, tenant.business_id,
                                         consultation_id, at,
                                         acquire_timeout=request.app.state.acquire_timeout)
    except AsOfInFuture:
        raise InvalidParameter("'as_of' is later than now: what will have happened is not known yet.") from None
    if found is None:
        raise NotFound("No such consultation for this business at that time.")
    return found
