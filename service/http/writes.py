"""What the write endpoints share: the Idempotency-Key and its fingerprint, the audit metadata,
and the HTTP answer rebuilt from the event that answers the request (the same forever)."""

from __future__ import annotations

import hashlib
import re
import uuid

import msgspec
from litestar import Request, Response

from events.types import ConsultDecided, ConsultSubmitted, EventMetadata, Idempotency, SubmissionDeduplicated
from service.handlers import Recorded
from service.http.problems import InvalidIdempotencyKey
from service.http.scope import header
from service.keys import Tenant

_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # fullmatch: $ would take a trailing newline
_ENCODER = msgspec.json.Encoder()


class SubmissionView(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a submission."""

    submission_id: uuid.UUID
    consultation_id: uuid.UUID
    status: str
    event_id: uuid.UUID
    position: int


class DecisionView(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a decision."""

    consultation_id: uuid.UUID
    status: str
    event_id: uuid.UUID
    position: int


def idempotency_key(request: Request, operation: bytes, canonical: msgspec.Struct) -> Idempotency:
    """The request's key and the fingerprint that a retry under the same key must match.

    The fingerprint covers the operation, its target and the decoded body, so a
    retry that only reorders JSON fields is still the same request.
    """
    key = header(request, b"idempotency-key")
    if key is None or not _KEY.fullmatch(key):
        raise InvalidIdempotencyKey("Send an Idempotency-Key header of 1–255 visible ASCII characters.")
    fingerprint = hashlib.sha256(operation + b"\x00" + canonical_body(canonical)).digest()
    return Idempotency(key=key, fingerprint=fingerprint)


def canonical_body(body: msgspec.Struct) -> bytes:
    """The decoded body as the fingerprint covers it: every field, in the Struct's order,
    except a field the body gained after its first release (its `added_later`) while it is
    unset. A request sent before that field existed then fingerprints exactly as it did, so
    its retry under the same key still replays; a request that sets the field is a new shape
    no earlier release could have fingerprinted."""
    fields = msgspec.structs.asdict(body)
    for name in getattr(body, "added_later", ()):
        if fields[name] is None:
            del fields[name]
    return _ENCODER.encode(fields)


def event_metadata(request: Request, tenant: Tenant) -> EventMetadata:
    """Who is acting, for the audit trail."""
    request_id = request.scope["state"]["request_id"]
    correlation_id = header(request, b"x-correlation-id")
    return EventMetadata(request_id=request_id, actor=tenant.principal.actor,
                         correlation_id=(request_id if correlation_id is None else correlation_id)[:128])


def view_of(recorded: Recorded) -> tuple[int, SubmissionView | DecisionView]:
    """The status and body that answer a request, from the event that answers it."""
    data = recorded.event
    if isinstance(data, ConsultSubmitted):
        return 202, SubmissionView(submission_id=data.submission_id, consultation_id=data.consultation_id,
                                   status="pending", event_id=recorded.event_id, position=recorded.position)
    if isinstance(data, SubmissionDeduplicated):  # answered with the open submission
        return 200, SubmissionView(submission_id=data.open_submission_id, consultation_id=data.consultation_id,
                                   status="pending", event_id=data.open_event_id, position=data.open_position)
    if isinstance(data, ConsultDecided):
        return 200, DecisionView(consultation_id=data.consultation_id, status=data.decision,
                                 event_id=recorded.event_id, position=recorded.position)
    raise TypeError(f"no answer is defined for {type(data).__name__}")


def answer(recorded: Recorded, location: str | None = None) -> Response[bytes]:
    """The HTTP response for a recorded event, identical for the first answer and every replay."""
    status, body = view_of(recorded)
    headers = {"Location": location} if location else {}
    if recorded.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(_ENCODER.encode(body), status_code=status, media_type="application/json", headers=headers)
