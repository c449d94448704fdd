"""POST /v1/businesses/{slug}/consultations/{consultation_id}/decision: parse → command → handle → answer."""

from __future__ import annotations

from litestar import Request, Response

from service import domain
from service.http import params
from service.http.auth import guarded_post, requires
from service.http.openapi import IDEMPOTENCY_KEY, documented
from service.http.schemas import DecisionIn, check_json_content_type, decode_body
from service.http.writes import answer, event_metadata, idempotency_key
from service.keys import Tenant


@guarded_post("/v1/businesses/{slug:str}/consultations/{consultation_id:str}/decision",
              guards=[requires("consultations:decide")], status_code=200,
              summary="Approve or reject a pending consultation", tags=["decisions"],
              operation_class=documented(body=DecisionIn, parameters=(IDEMPOTENCY_KEY,)))
async def decide_consultation(request: Request) -> Response[bytes]:
    """Record a decision exactly once per Idempotency-Key; see docs/API.md, section 4."""
    tenant: Tenant = request.state.tenant
    check_json_content_type(request.headers.get("content-type"))
    body = decode_body(await request.body(), DecisionIn)
    consultation_id = params.uuid_or_404(request, "consultation_id", "consultation")
    # The target is part of the fingerprint: the same key sent for another
    # consultation is a reused key (422), never a replay of the first answer.
    key = idempotency_key(request, b"decide:%d:%s" % (tenant.business_id, str(consultation_id).encode()), body)
    state = request.app.state
    command = domain.DecideConsult(consultation_id=consultation_id, decision=body.decision,
                                   reason=body.reason, clinician_id=body.clinician_id, at=state.clock())
    await state.faults.hit("request.before_append")
    recorded = await state.intake.decide(tenant.business_id, command, key, event_metadata(request, tenant))
    return answer(recorded)
