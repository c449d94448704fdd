"""POST /v1/businesses/{slug}/partners/{partner}/callbacks: a partner's signed status report.

No API key: the Standard Webhooks signature over the raw body is the authentication, checked
before the body is even parsed. Then parse → command → handle → answer, like every write.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Literal

import msgspec
from litestar import Request, Response, post

from events.types import EventMetadata, Idempotency, PartnerStatusReported
from projections.signatures import MalformedSignatureHeaders
from service.handlers import Recorded
from service.http.openapi import documented
from service.http.schemas import Id, check_json_content_type, decode_body
from service.partner_domain import ReportPartnerStatus
from service.partners import VerifiedCallback

_ENCODER = msgspec.json.Encoder()
_HEADER = {"schema": {"type": "string"}, "in": "header", "required": True}
WEBHOOK_HEADERS = (
    {**_HEADER, "name": "webhook-id", "description": "The message id: a redelivery keeps it, and is recorded once."},
    {**_HEADER, "name": "webhook-timestamp", "description": "Seconds since the epoch; within 5 minutes of ours."},
    {**_HEADER, "name": "webhook-signature", "description": "`v1,` + base64 HMAC-SHA256 of `id.timestamp.body`."},
)


class PartnerCallbackIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A partner's status report on an approved consultation."""

    consultation_id: uuid.UUID
    status: Literal["accepted", "in_progress", "completed", "cancelled"]
    reference: Id | None = None


class CallbackView(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a callback: the same for its first delivery and every redelivery."""

    outcome: Literal["processed", "already_processed"]
    consultation_id: uuid.UUID
    partner_status: str
    event_id: uuid.UUID
    position: int


_WEBHOOK_ID = re.compile(r"[\x21-\x7e]{1,128}")  # fullmatch: $ would take a trailing newline


@post("/v1/businesses/{slug:str}/partners/{partner:str}/callbacks", status_code=200,
      summary="A partner reports the status of an approved consultation (Standard Webhooks signed)",
      tags=["partners"], operation_class=documented(body=PartnerCallbackIn, parameters=WEBHOOK_HEADERS))
async def partner_callback(request: Request) -> Response[bytes]:
    """Record the report exactly once per webhook-id; see docs/API.md, "Partner callbacks"."""
    state = request.app.state
    slug, partner = request.path_params["slug"], request.path_params["partner"]
    raw = await request.body()
    sender: VerifiedCallback = await state.partner_callbacks.verify(slug, partner, request.headers, raw, state.clock())
    webhook_id = sender.webhook_id
    if not _WEBHOOK_ID.fullmatch(webhook_id):
        raise MalformedSignatureHeaders("A webhook-id is 1-128 visible ASCII characters.")
    check_json_content_type(request.headers.get("content-type"))
    body = decode_body(raw, PartnerCallbackIn)
    # The key is the partner's message id, scoped to the partner so it can never meet a client's
    # Idempotency-Key; the fingerprint makes the same id with another body a reused key (422).
    key = Idempotency(key=f"webhook:{partner}:{webhook_id}",
                      fingerprint=hashlib.sha256(b"partner-callback:%s\x00" % partner.encode() + raw).digest())
    command = ReportPartnerStatus(consultation_id=body.consultation_id, partner=partner, status=body.status,
                                  webhook_id=webhook_id, reference=body.reference, reported_at=sender.sent_at,
                                  at=state.clock())
    meta = EventMetadata(request_id=request.scope["state"]["request_id"], actor=f"partner:{partner}",
                         correlation_id=webhook_id)
    return _answer(await state.intake.report_partner_status(sender.business_id, command, key, meta))


def _answer(recorded: Recorded) -> Response[bytes]:
    event = recorded.event
    assert isinstance(event, PartnerStatusReported)
    view = CallbackView(outcome="already_processed" if recorded.replayed else "processed",
                        consultation_id=event.consultation_id, partner_status=event.status,
                        event_id=recorded.event_id, position=recorded.position)
    headers = {"Idempotent-Replayed": "true"} if recorded.replayed else {}
    return Response(_ENCODER.encode(view), status_code=200, media_type="application/json", headers=headers)
