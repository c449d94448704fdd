"""POST /v1/businesses/{slug}/patients/forget: erase a patient (admin scope); see service/erasure.py."""

from __future__ import annotations

import uuid

import msgspec
from litestar import Request, post

from service.erasure import forget_patient
from service.http.auth import requires
from service.http.openapi import documented
from service.http.schemas import ForgetIn, check_json_content_type, decode_body
from service.http.writes import event_metadata
from service.keys import Tenant


class ForgottenView(msgspec.Struct, frozen=True):
    """What forgetting did. `already_forgotten`: nothing was left to destroy (no new event)."""

    patient_id: uuid.UUID
    already_forgotten: bool
    destroyed_keys: int
    position: int | None


@post("/v1/businesses/{slug:str}/patients/forget", guards=[requires("admin")], status_code=200,
      summary="Erase a patient's personal data (crypto-shredding)", tags=["privacy"],
      operation_class=documented(body=ForgetIn))
async def forget(request: Request) -> ForgottenView:
    """Destroy the patient's data keys and record `patient.forgotten`; a second call is a no-op."""
    tenant: Tenant = request.state.tenant
    check_json_content_type(request.headers.get("content-type"))
    body = decode_body(await request.body(), ForgetIn)
    state = request.app.state
    outcome = await forget_patient(state.store, state.projector, business_id=tenant.business_id,
                                   customer_id=body.customer_id,
                                   reason=body.reason, metadata=event_metadata(request, tenant), at=state.clock(),
                                   event_id=state.new_id())
    return ForgottenView(patient_id=outcome.patient_id, already_forgotten=outcome.already_forgotten,
                         destroyed_keys=len(outcome.key_ids), position=outcome.position)
