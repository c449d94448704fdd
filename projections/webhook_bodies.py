"""What a delivery says: built from the log when it is sent, with identifiers, types, times,
statuses and decisions only. Pure.

Never patient details (names, contact details, date of birth, complaint, history, answers) and
never a clinician's free-text reason: a receiver's logs and queues are outside our erasure and
encryption, so what they get must be what may be kept anywhere. Delivery rows store the event's id
and position, not its payload, for the same reason.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import msgspec

from events.types import ConsultDecided, ConsultSubmitted, PartnerStatusReported, StoredEvent

# What an endpoint may subscribe to; consult.decided is published by its outcome.
WEBHOOK_TYPES = ("consult.submitted", "consult.approved", "consult.rejected", "partner.status_reported")
_ENCODER = msgspec.json.Encoder()


def body(event: StoredEvent, stream: Sequence[StoredEvent], webhook_type: str) -> bytes:
    """The JSON body (Standard Webhooks' {type, timestamp, data}); `stream` is the event's stream,
    from which the consultation's customer and product are taken for events that do not carry them."""
    data: dict[str, Any] = {"event_id": str(event.event_id), "position": event.position}
    data.update(_facts(event.data, _submission(stream, getattr(event.data, "consultation_id", None))))
    return _ENCODER.encode({"type": webhook_type, "timestamp": _utc(event.recorded_at), "data": data})


def _facts(payload: object, submitted: ConsultSubmitted | None) -> dict[str, Any]:
    consultation: dict[str, Any] = {} if submitted is None else {
        "consultation_id": str(submitted.consultation_id), "submission_id": str(submitted.submission_id),
        "patient_id": str(submitted.patient_id), "customer_id": submitted.customer_id,
        "product_id": submitted.product_id}
    if isinstance(payload, ConsultSubmitted):
        return {**consultation, "status": "pending", "submitted_at": _utc(payload.submitted_at)}
    if isinstance(payload, ConsultDecided):
        return {**consultation, "consultation_id": str(payload.consultation_id), "status": payload.decision,
                "decision": payload.decision, "clinician_id": payload.clinician_id,
                "decided_at": _utc(payload.decided_at)}
    if isinstance(payload, PartnerStatusReported):
        return {**consultation, "consultation_id": str(payload.consultation_id), "partner": payload.partner,
                "partner_status": payload.status, "reference": payload.reference,
                "reported_at": _utc(payload.reported_at)}
    return {}


def _submission(stream: Sequence[StoredEvent], consultation_id: object) -> ConsultSubmitted | None:
    for stored in stream:
        if isinstance(stored.data, ConsultSubmitted) and stored.data.consultation_id == consultation_id:
            return stored.data
    return None


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
