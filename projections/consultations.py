"""Read model: one consultation per submission, with its decision."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

from events.types import ConsultDecided, ConsultSubmitted, PartnerStatusReported, StoredEvent

NAME = "consultations"


class ConsultationRow(msgspec.Struct, frozen=True, kw_only=True):
    """A consultations row."""

    consultation_id: uuid.UUID
    business_id: int
    submission_id: uuid.UUID
    patient_id: uuid.UUID
    customer_id: str
    product_id: str
    status: str
    submitted_at: dt.datetime
    decided_at: dt.datetime | None
    decision: str | None
    reason: str | None
    clinician_id: str | None
    stream_id: str
    version: int
    position: int
    consent_document_version: str | None = None
    consent_accepted_at: dt.datetime | None = None
    # The latest status a partner reported (migration 0012); None until one does.
    partner: str | None = None
    partner_status: str | None = None
    partner_status_at: dt.datetime | None = None


def key(event: StoredEvent) -> uuid.UUID | None:
    """The consultation an event is about, if any."""
    data = event.data
    return data.consultation_id if isinstance(data, ConsultSubmitted | ConsultDecided | PartnerStatusReported) else None


def evolve(row: ConsultationRow | None, event: StoredEvent) -> ConsultationRow | None:
    """The consultation after one event of its stream."""
    data = event.data
    if isinstance(data, ConsultSubmitted):
        consent = data.consent  # None for a consultation submitted before consent (version 1)
        return ConsultationRow(
            consultation_id=data.consultation_id, business_id=event.business_id, submission_id=data.submission_id,
            patient_id=data.patient_id, customer_id=data.customer_id, product_id=data.product_id,
            status="pending", submitted_at=data.submitted_at, decided_at=None, decision=None, reason=None,
            clinician_id=None, stream_id=event.stream_id, version=event.stream_version, position=event.position,
            consent_document_version=consent.document_version if consent else None,
            consent_accepted_at=consent.accepted_at if consent else None)
    if isinstance(data, ConsultDecided) and row is not None:
        return msgspec.structs.replace(row, status=data.decision, decided_at=data.decided_at,
                                       decision=data.decision, reason=data.reason,
                                       clinician_id=data.clinician_id, version=event.stream_version)
    if isinstance(data, PartnerStatusReported) and row is not None:
        return msgspec.structs.replace(row, partner=data.partner, partner_status=data.status,
                                       partner_status_at=data.reported_at, version=event.stream_version)
    return row
