"""Read model: one patient per (business, customer_id), details from their latest submission."""

from __future__ import annotations

import uuid

import msgspec

from events.types import ConsultSubmitted, StoredEvent

NAME = "patients"


class PatientRow(msgspec.Struct, frozen=True, kw_only=True):
    """A patients row."""

    business_id: int
    patient_id: object
    customer_id: str
    first_name: str
    last_name: str
    email: str
    phone: str | None
    date_of_birth: object
    source_position: int
    updated_at: object


def key(event: StoredEvent) -> tuple[int, uuid.UUID] | None:
    """The patient an event is about, if any: one per (business, customer)."""
    data = event.data
    return (event.business_id, data.patient_id) if isinstance(data, ConsultSubmitted) else None


def evolve(row: PatientRow | None, event: StoredEvent) -> PatientRow | None:
    """The patient after one event: a later submission (by log position) replaces the details."""
    data = event.data
    if not isinstance(data, ConsultSubmitted):
        return row
    if row is not None and row.source_position >= event.position:
        return row
    return PatientRow(
        business_id=event.business_id, patient_id=data.patient_id, customer_id=data.customer_id,
        first_name=data.patient.first_name, last_name=data.patient.last_name, email=data.patient.email,
        phone=data.patient.phone, date_of_birth=data.patient.date_of_birth, source_position=event.position,
        updated_at=data.submitted_at,
    )
