"""Read model: the clinicians' queue, one approval per consultation, at most one pending per slot."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

from events.types import ConsultDecided, ConsultSubmitted, StoredEvent

NAME = "approvals"


class ApprovalRow(msgspec.Struct, frozen=True, kw_only=True):
    """An approvals row."""

    consultation_id: uuid.UUID
    business_id: int
    customer_id: str
    product_id: str
    status: str
    requested_at: dt.datetime
    decided_at: dt.datetime | None
    clinician_id: str | None
    position: int


def key(event: StoredEvent) -> uuid.UUID | None:
    """The consultation an event is about, if any."""
    data = event.data
    return data.consultation_id if isinstance(data, ConsultSubmitted | ConsultDecided) else None


def evolve(row: ApprovalRow | None, event: StoredEvent) -> ApprovalRow | None:
    """The approval after one event of its stream."""
    data = event.data
    if isinstance(data, ConsultSubmitted):
        return ApprovalRow(consultation_id=data.consultation_id, business_id=event.business_id,
                           customer_id=data.customer_id, product_id=data.product_id, status="pending",
                           requested_at=data.submitted_at, decided_at=None, clinician_id=None,
                           position=event.position)
    if isinstance(data, ConsultDecided) and row is not None:
        return msgspec.structs.replace(row, status=data.decision, decided_at=data.decided_at,
                                       clinician_id=data.clinician_id)
    return row
