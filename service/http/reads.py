"""The read API (contract section 3): consultations, patients and approvals from the
projections, keyset-paginated, with read-your-writes through `min_position`."""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response, Router, get

from events.errors import translating_driver_errors
from events.sqlfiles import queries
from service.http.auth import Tenant, requires
from service.http.problems import MEDIA_TYPE, PROBLEM_BASE, InvalidParameter, NotFound, ProblemBody

DEFAULT_LIMIT, MAX_LIMIT = 20, 100
STATUSES = frozenset({"pending", "approved", "rejected"})
# Read-your-writes waits this long for the projectors, looking this often: a
# worker applies a fresh event within milliseconds, so most waits end at the first look.
FRESHNESS_WAIT_S, FRESHNESS_POLL_S = 2.0, 0.02
_BIGINT_MAX = 2**63 - 1  # positions are bigint: anything larger would be a driver error, not a 400
_NIL = uuid.UUID(int=0)


class ProjectionLagging(Exception):
    """The projection has not yet applied every event up to the requested position; retry shortly."""


class Decision(msgspec.Struct, frozen=True):
    """How a consultation was decided."""

    decision: str
    reason: str | None
    clinician_id: str | None


class ConsultationView(msgspec.Struct, frozen=True):
    """A consultation as the API shows it."""

    consultation_id: uuid.UUID
    submission_id: uuid.UUID
    patient_id: uuid.UUID
    customer_id: str
    product_id: str
    status: str
    submitted_at: dt.datetime
    decided_at: dt.datetime | None
    decision: Decision | None
    version: int


class PatientView(msgspec.Struct, frozen=True):
    """A patient, with the details of their latest submission."""

    patient_id: uuid.UUID
    customer_id: str
    first_name: str
    last_name: str
    email: str
    phone: str | None
    date_of_birth: dt.date
    updated_at: dt.datetime


class ApprovalView(msgspec.Struct, frozen=True):
    """An entry of the clinicians' queue."""

    consultation_id: uuid.UUID
    customer_id: str
    product_id: str
    status: str
    requested_at: dt.datetime
    decided_at: dt.datetime | None
    clinician_id: str | None


class ConsultationPage(msgspec.Struct, frozen=True):
    """One page of consultations; pass `next_cursor` back as `cursor` for the next."""

    items: list[ConsultationView]
    next_cursor: str | None


class PatientPage(msgspec.Struct, frozen=True):
    """One page of patients; pass `next_cursor` back as `cursor` for the next."""

    items: list[PatientView]
    next_cursor: str | None


class ApprovalPage(msgspec.Struct, frozen=True):
    """One page of approvals; pass `next_cursor` back as `cursor` for the next."""

    items: list[ApprovalView]
    next_cursor: str | None


def _integer(request: Request, name: str, *, low: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= _BIGINT_MAX:
        raise InvalidParameter(f"'{name}' must be an integer >= {low}.")
    return int(raw)


def _limit(request: Request) -> int:
    limit = _integer(request, "limit", low=1)
    return DEFAULT_LIMIT if limit is None else min(limit, MAX_LIMIT)


def _status(request: Request, default: str | None = None) -> str | None:
    status = request.query_params.get("status", default)
    if status is not None and status not in STATUSES:
        raise InvalidParameter("'status' must be one of pending, approved, rejected.")
    return status


def _uuid_or_404(raw: str, what: str) -> uuid.UUID:
    # An id that is not a UUID names nothing, so it is not found rather than malformed.
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"No such {what} for this business.") from None


# The cursor is opaque to clients: a kind tag (so one list's cursor is not taken
# by another) and the last row's sort key, base64url without padding.
def _encode_cursor(kind: str, *key: object) -> str:
    text = ":".join((kind, *map(str, key)))
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def _cursor(request: Request, kind: str, parse: Callable[[list[str]], tuple[Any, ...]],
            first: tuple[Any, ...]) -> tuple[Any, ...]:
    raw = request.query_params.get("cursor")
    if raw is None:
        return first
    try:
        tag, *key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode().split(":")
        if tag != kind:
            raise ValueError(tag)
        return parse(key)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidParameter("'cursor' is not a cursor this list returned.") from None


def _position_key(key: list[str]) -> tuple[int, uuid.UUID]:
    position, row_id = key  # ValueError unless exactly two parts
    if not (position.isascii() and position.isdigit()) or int(position) > _BIGINT_MAX:
        raise ValueError("position")
    return int(position), uuid.UUID(row_id)


def _patient_key(key: list[str]) -> tuple[uuid.UUID]:
    (patient_id,) = key
    return (uuid.UUID(patient_id),)


async def _fetch(request: Request, name: str, *args: object) -> list[asyncpg.Record]:
    state = request.app.state
    with translating_driver_errors():
        async with state.pool.acquire(timeout=state.settings.db_acquire_timeout_ms / 1000) as conn:
            return await conn.fetch(queries("reads")[name], *args)


class Freshness:
    """Waits until a projection has applied every event of a business up to a position.

    Keeps, per projection, a floor in the log below which everything is known to be
    applied, so each look scans only the events since (see reads.sql: projection_lag).
    """

    def __init__(self) -> None:
        self._floors: dict[str, tuple[int, int]] = {}  # projection -> (tx_id, position)

    async def wait(self, request: Request, projection: str, business_id: int, position: int) -> None:
        """Return once caught up; ProjectionLagging after FRESHNESS_WAIT_S."""
        deadline = time.monotonic() + FRESHNESS_WAIT_S
        while await self._lagging(request, projection, business_id, position):
            if time.monotonic() >= deadline:
                raise ProjectionLagging(ProjectionLagging.__doc__)
            await asyncio.sleep(FRESHNESS_POLL_S)

    async def _lagging(self, request: Request, projection: str, business_id: int, position: int) -> bool:
        tx_id, floor = self._floors.get(projection, (0, 0))
        (row,) = await _fetch(request, "projection_lag", projection, position, business_id, str(tx_id), floor)
        if not row["floor_holds"]:  # checkpoints were reset under the floor: start over
            self._floors.pop(projection, None)
            return await self._lagging(request, projection, business_id, position)
        if row["floor_tx"] is not None:
            # Concurrent looks may finish out of order: a floor only moves forward.
            new = (int(row["floor_tx"]), row["floor_position"])
            self._floors[projection] = max(new, self._floors.get(projection, new))
        return bool(row["lagging"])


async def _wait_for_projection(request: Request, projection: str) -> Tenant:
    """The tenant, once `projection` is as fresh as the request's `min_position` asks."""
    tenant: Tenant = request.state.tenant
    position = _integer(request, "min_position", low=0)
    if position:
        # One per app, made on first use: it holds no connection, only floors.
        freshness: Freshness = request.app.state.read_freshness
        await freshness.wait(request, projection, tenant.business_id, position)
    return tenant


def projection_lagging(request: Request, exc: ProjectionLagging) -> Response[bytes]:
    """503 with Retry-After: the problems table has no per-exception Retry-After for client problems."""
    body = ProblemBody(type=PROBLEM_BASE + "projection-lagging", title="Projection lagging", status=503,
                       detail=str(exc), instance=request.url.path)
    return Response(msgspec.json.encode(body), status_code=503, media_type=MEDIA_TYPE,
                    headers={"Retry-After": "1"})


def _page(rows: Sequence[asyncpg.Record], limit: int, key: Callable[[asyncpg.Record], str]
          ) -> tuple[Sequence[asyncpg.Record], str | None]:
    """The rows of a page (one more was fetched to learn whether another page follows)."""
    return (rows[:limit], key(rows[limit - 1])) if len(rows) > limit else (rows, None)


def _consultation(r: asyncpg.Record) -> ConsultationView:
    decision = Decision(r["decision"], r["reason"], r["clinician_id"]) if r["decision"] else None
    return ConsultationView(r["consultation_id"], r["submission_id"], r["patient_id"], r["customer_id"],
                            r["product_id"], r["status"], r["submitted_at"], r["decided_at"], decision,
                            r["version"])


def _patient(r: asyncpg.Record) -> PatientView:
    return PatientView(**dict(r))


def _approval(r: asyncpg.Record) -> ApprovalView:
    return ApprovalView(**{k: v for k, v in r.items() if k != "position"})


@get("/consultations/{consultation_id:str}", summary="Read one consultation")
async def get_consultation(request: Request) -> ConsultationView:
    """The consultation, as far as the projection has applied; 404 if this business has none such."""
    consultation_id = _uuid_or_404(request.path_params["consultation_id"], "consultation")
    tenant = await _wait_for_projection(request, "consultations")
    rows = await _fetch(request, "consultation", tenant.business_id, consultation_id)
    if not rows:
        raise NotFound("No such consultation for this business.")
    return _consultation(rows[0])


@get("/consultations", summary="List consultations in submission order")
async def list_consultations(request: Request) -> ConsultationPage:
    """Filter by `status` and `customer_id`; keyset pages of `limit` (≤ 100) rows."""
    limit, status = _limit(request), _status(request)
    after = _cursor(request, "c", _position_key, (0, _NIL))
    customer_id = request.query_params.get("customer_id")
    tenant = await _wait_for_projection(request, "consultations")
    args = [tenant.business_id, *after, status, limit + 1]
    # A query per filter shape, each with its own index (reads.sql: consultations).
    in_status = "" if status is None else "_in_status"
    rows = await (_fetch(request, "consultations" + in_status, *args) if customer_id is None
                  else _fetch(request, "consultations_of_customer" + in_status, *args, customer_id))
    page, next_cursor = _page(rows, limit, lambda r: _encode_cursor("c", r["position"], r["consultation_id"]))
    return ConsultationPage([_consultation(r) for r in page], next_cursor)


@get("/patients/{patient_id:str}", summary="Read one patient")
async def get_patient(request: Request) -> PatientView:
    """The patient, with their latest submitted details; 404 if this business has none such."""
    patient_id = _uuid_or_404(request.path_params["patient_id"], "patient")
    tenant = await _wait_for_projection(request, "patients")
    rows = await _fetch(request, "patient", tenant.business_id, patient_id)
    if not rows:
        raise NotFound("No such patient for this business.")
    return _patient(rows[0])


@get("/patients", summary="List patients")
async def list_patients(request: Request) -> PatientPage:
    """Keyset pages of `limit` (≤ 100) patients in patient_id order."""
    limit = _limit(request)
    (after,) = _cursor(request, "p", _patient_key, (_NIL,))
    tenant = await _wait_for_projection(request, "patients")
    rows = await _fetch(request, "patients", tenant.business_id, after, limit + 1)
    page, next_cursor = _page(rows, limit, lambda r: _encode_cursor("p", r["patient_id"]))
    return PatientPage([_patient(r) for r in page], next_cursor)


@get("/approvals", summary="List the approval queue")
async def list_approvals(request: Request) -> ApprovalPage:
    """Approvals of one `status` (default pending) in request order; keyset pages of `limit` (≤ 100)."""
    limit, status = _limit(request), _status(request, default="pending")
    after = _cursor(request, "a", _position_key, (0, _NIL))
    tenant = await _wait_for_projection(request, "approvals")
    rows = await _fetch(request, "approvals", tenant.business_id, *after, status, limit + 1)
    page, next_cursor = _page(rows, limit, lambda r: _encode_cursor("a", r["position"], r["consultation_id"]))
    return ApprovalPage([_approval(r) for r in page], next_cursor)


router = Router(
    "/v1/businesses/{slug:str}",
    route_handlers=[get_consultation, list_consultations, get_patient, list_patients, list_approvals],
    guards=[requires("consultations:read")],
    exception_handlers={ProjectionLagging: projection_lagging},
    tags=["reads"],
)
