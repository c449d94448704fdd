"""The read API (docs/API.md, section 3): consultations, patients and approvals from the
projections, keyset-paginated, with read-your-writes through `min_position`."""

from __future__ import annotations

from typing import TypeVar

import msgspec
from litestar import Request, Router, get

from projections.queries import (
    FIRST_BY_PATIENT,
    FIRST_BY_POSITION,
    ApprovalView,
    ConsultationView,
    Page,
    PatientView,
    ReadModels,
)
from service.http import as_of, params
from service.http.auth import requires
from service.http.openapi import CURSOR, CUSTOMER_ID, LIMIT, MIN_POSITION, STATUS, documented
from service.http.problems import NotFound
from service.keys import Tenant

V = TypeVar("V")


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


def _next_cursor(page: Page[V], kind: str) -> str | None:
    return params.encode_cursor(kind, page.next_key) if page.next_key else None


async def _fresh_tenant(request: Request, projection: str) -> tuple[Tenant, ReadModels]:
    """The tenant, once `projection` is as fresh as the request's `min_position` asks."""
    tenant: Tenant = request.state.tenant
    position = params.integer(request, "min_position", low=0)
    if position:
        await request.app.state.freshness.wait(projection, tenant.business_id, position)
    return tenant, request.app.state.read_models


@get("/consultations/{consultation_id:str}", summary="Read one consultation",
     operation_class=documented(parameters=(MIN_POSITION, as_of.AS_OF)))
async def get_consultation(request: Request) -> ConsultationView:
    """The consultation, as far as the projection has applied; 404 if this business has none such.
    With `as_of`, as it stood then, from the log (service/http/as_of.py)."""
    consultation_id = params.uuid_or_404(request, "consultation_id", "consultation")
    if (at := as_of.time_parameter(request, "as_of")) is not None:
        return await as_of.consultation_at(request, consultation_id, at)
    tenant, reads = await _fresh_tenant(request, "consultations")
    if (found := await reads.consultation(tenant.business_id, consultation_id)) is None:
        raise NotFound("No such consultation for this business.")
    return found


@get("/consultations", summary="List consultations in submission order",
     operation_class=documented(parameters=(STATUS, CUSTOMER_ID, LIMIT, CURSOR, MIN_POSITION)))
async def list_consultations(request: Request) -> ConsultationPage:
    """Filter by `status` and `customer_id`; keyset pages of `limit` (≤ 100) rows."""
    limit, status = params.limit(request), params.status(request)
    after = params.cursor(request, "c", params.position_key, FIRST_BY_POSITION)
    customer_id = params.text(request, "customer_id", params.ID)
    tenant, reads = await _fresh_tenant(request, "consultations")
    page = await reads.consultations(tenant.business_id, after=after, limit=limit, status=status,
                                     customer_id=customer_id)
    return ConsultationPage(page.items, _next_cursor(page, "c"))


@get("/patients/{patient_id:str}", summary="Read one patient",
     operation_class=documented(parameters=(MIN_POSITION,)))
async def get_patient(request: Request) -> PatientView:
    """The patient, with their latest submitted details; 404 if this business has none such."""
    patient_id = params.uuid_or_404(request, "patient_id", "patient")
    tenant, reads = await _fresh_tenant(request, "patients")
    if (found := await reads.patient(tenant.business_id, patient_id)) is None:
        raise NotFound("No such patient for this business.")
    return found


@get("/patients", summary="List patients", operation_class=documented(parameters=(LIMIT, CURSOR, MIN_POSITION)))
async def list_patients(request: Request) -> PatientPage:
    """Keyset pages of `limit` (≤ 100) patients in patient_id order."""
    limit = params.limit(request)
    after = params.cursor(request, "p", params.patient_key, FIRST_BY_PATIENT)
    tenant, reads = await _fresh_tenant(request, "patients")
    page = await reads.patients(tenant.business_id, after=after, limit=limit)
    return PatientPage(page.items, _next_cursor(page, "p"))


@get("/approvals", summary="List the approval queue",
     operation_class=documented(parameters=(STATUS, LIMIT, CURSOR, MIN_POSITION)))
async def list_approvals(request: Request) -> ApprovalPage:
    """Approvals of one `status` (default pending) in request order; keyset pages of `limit` (≤ 100)."""
    limit, status = params.limit(request), params.status(request, default="pending")
    after = params.cursor(request, "a", params.position_key, FIRST_BY_POSITION)
    tenant, reads = await _fresh_tenant(request, "approvals")
    page = await reads.approvals(tenant.business_id, after=after, limit=limit, status=status or "pending")
    return ApprovalPage(page.items, _next_cursor(page, "a"))


router = Router(
    "/v1/businesses/{slug:str}",
    route_handlers=[get_consultation, list_consultations, get_patient, list_patients, list_approvals],
    guards=[requires("consultations:read")],
    tags=["reads"],
)
