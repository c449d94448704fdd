"""Read model: one patient per (business, customer_id), details from their latest submission;
erased (no personal data at all) once forgotten, until a later submission brings new details."""

from __future__ import annotations

import uuid

import msgspec

from events.types import ERASED, ConsultSubmitted, PatientForgotten, StoredEvent

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
    erased: bool = False


def key(event: StoredEvent) -> tuple[int, uuid.UUID] | None:
    """The patient an event is about, if any: one per (business, customer)."""
    data = event.data
    return (event.business_id, data.patient_id) if isinstance(data, ConsultSubmitted | PatientForgotten) else None


def evolve(row: PatientRow | None, event: StoredEvent) -> PatientRow | None:
    """The patient after one event: a later event (by log position) replaces the details, with
    nothing personal left once the patient is forgotten or their submission's key is destroyed."""
    data = event.data
    if not isinstance(data, ConsultSubmitted | PatientForgotten):
        return row
    if row is not None and row.source_position >= event.position:
        return row
    if isinstance(data, PatientForgotten):
        return erased(event.business_id, data.patient_id, data.customer_id, event.position, data.forgotten_at)
    if data.patient == ERASED:
        return erased(event.business_id, data.patient_id, data.customer_id, event.position, data.submitted_at)
    return PatientRow(
        business_id=event.business_id, patient_id=data.patient_id, customer_id=data.customer_id,
        first_name=data.patient.first_name, last_name=data.patient.last_name, email=data.patient.email,
        phone=data.patient.phone, date_of_birth=data.patient.date_of_birth, source_position=event.position,
        updated_at=data.submitted_at,
    )


def erased(business_id: int, patient_id: uuid.UUID, customer_id: str, position: int, at: object) -> PatientRow:
    """A patient row with no personal data left."""
    return PatientRow(business_id=business_id, patient_id=patient_id, customer_id=customer_id, first_name=ERASED,
                      last_name=ERASED, email=ERASED, phone=None, date_of_birth=None, source_position=position,
                      updated_at=at, erased=True)
