"""POST /v1/businesses/{slug}/consult-submissions: parse → command → handle → answer."""

from __future__ import annotations

import hashlib
import re

import msgspec
from litestar import Request, Response, post

from events.store import Idempotency
from events.types import Answer, EventMetadata, PatientDetails
from service import domain
from service.handlers import Outcome
from service.http.auth import Tenant, requires
from service.http.problems import InvalidIdempotencyKey
from service.http.schemas import SubmissionIn, check_json_content_type, decode_body

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_ENCODER = msgspec.json.Encoder()


def idempotency_key(request: Request, operation: bytes, canonical: msgspec.Struct) -> Idempotency:
    """The request's key and the fingerprint that a retry under the same key must match.

    The fingerprint covers the operation, its target and the decoded body, so a
    retry that only reorders JSON fields is still the same request.
    """
    key = request.headers.get("idempotency-key")
    if key is None or not _KEY.match(key):
        raise InvalidIdempotencyKey("Send an Idempotency-Key header of 1–255 visible ASCII characters.")
    fingerprint = hashlib.sha256(operation + b"\x00" + _ENCODER.encode(canonical)).digest()
    return Idempotency(key=key, fingerprint=fingerprint)


def event_metadata(request: Request, tenant: Tenant) -> EventMetadata:
    """Who is acting, for the audit trail."""
    request_id = request.scope["state"]["request_id"]
    return EventMetadata(request_id=request_id, actor=tenant.principal.actor,
                         correlation_id=request.headers.get("x-correlation-id", request_id)[:128])


def answer(outcome: Outcome, location: str | None = None) -> Response[bytes]:
    """The HTTP response for an outcome, identical for the first answer and every replay."""
    headers = {"Location": location} if location else {}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(_ENCODER.encode(outcome.body), status_code=outcome.status,
                    media_type="application/json", headers=headers)


@post("/v1/businesses/{slug:str}/consult-submissions", guards=[requires("submissions:write")],
      status_code=202, summary="Submit a consult request", tags=["intake"])
async def submit_consult(request: Request) -> Response[bytes]:
    """Append a consult submission exactly once per Idempotency-Key; see the API contract, section 2."""
    tenant: Tenant = request.state.tenant
    check_json_content_type(request.headers.get("content-type"))
    body = decode_body(await request.body(), SubmissionIn)
    key = idempotency_key(request, b"submit:%d" % tenant.business_id, body)
    state = request.app.state
    command = domain.SubmitConsult(
        submission_id=state.new_id(), consultation_id=state.new_id(), business_id=tenant.business_id,
        customer_id=body.customer_id, product_id=body.product_id,
        patient=msgspec.convert(msgspec.to_builtins(body.patient), PatientDetails),
        chief_complaint=body.chief_complaint, medical_history=body.medical_history,
        answers=tuple(Answer(question_id=a.question_id, answer=a.answer) for a in body.answers),
        at=state.clock(),
    )
    await state.faults.hit("request.before_append")
    outcome = await state.intake.submit(command, key, event_metadata(request, tenant))
    return answer(outcome, f"/v1/businesses/{tenant.slug}/consultations/{outcome.body.consultation_id}")
