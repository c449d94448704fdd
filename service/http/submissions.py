"""POST /v1/businesses/{slug}/consult-submissions: parse → command → handle → answer."""

from __future__ import annotations

from litestar import Request, Response

from events.types import Answer, PatientDetails, TelehealthConsent
from service import domain
from service.http.auth import guarded_post, requires
from service.http.openapi import IDEMPOTENCY_KEY, documented
from service.http.schemas import PatientIn, SubmissionIn, check_json_content_type, decode_body
from service.http.scope import header, tenant_of
from service.http.writes import answer, event_metadata, idempotency_key


@guarded_post("/v1/businesses/{slug:str}/consult-submissions", guards=[requires("submissions:write")],
              status_code=202, summary="Submit a consult request", tags=["intake"],
              operation_class=documented(body=SubmissionIn, parameters=(IDEMPOTENCY_KEY,)))
async def submit_consult(request: Request) -> Response[bytes]:
    """Append a consult submission exactly once per Idempotency-Key; see docs/API.md, section 2."""
    tenant = tenant_of(request)
    check_json_content_type(header(request, b"content-type"))
    body = decode_body(await request.body(), SubmissionIn)
    key = idempotency_key(request, b"submit:%d" % tenant.business_id, body)
    state = request.app.state
    command = domain.SubmitConsult(
        submission_id=state.new_id(), consultation_id=state.new_id(), business_id=tenant.business_id,
        customer_id=body.customer_id, product_id=body.product_id,
        patient=_patient(body.patient),
        chief_complaint=body.chief_complaint, medical_history=body.medical_history,
        answers=tuple(Answer(question_id=a.question_id, answer=a.answer) for a in body.answers),
        at=state.clock(),
        consent=None if body.consent is None else TelehealthConsent(
            document_version=body.consent.document_version, accepted_at=body.consent.accepted_at),
    )
    await state.faults.hit("request.before_append")
    recorded = await state.intake.submit(command, key, event_metadata(request, tenant))
    consultation_id = recorded.event.consultation_id  # type: ignore[union-attr]  # every submission answer has one
    return answer(recorded, f"/v1/businesses/{tenant.slug}/consultations/{consultation_id}")


def _patient(patient: PatientIn) -> PatientDetails:
    # Field by field rather than a round trip through builtins: the body is decoded once.
    return PatientDetails(first_name=patient.first_name, last_name=patient.last_name, email=patient.email,
                          date_of_birth=patient.date_of_birth, phone=patient.phone)
