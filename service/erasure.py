"""Forgetting a patient (`intake patients forget`, POST …/patients/forget): the patient's data keys
are destroyed and a `patient.forgotten` event says who, when and why, in one transaction
(events/keystore.py). Every personal field the patient ever submitted then reads "[erased]"."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from events.store import EventStore
from events.types import EventMetadata, PatientForgotten
from projections.projector import Projector
from projections.writers import apply_patients
from service import domain

MAX_REASON = 500


class PatientUnknown(Exception):
    """This business has no encrypted data for that customer: never submitted, or submitted only
    before encryption (run `intake patients encrypt-existing` first)."""


@dataclass(frozen=True, slots=True)
class ForgetOutcome:
    """The patient, and what forgetting did: the keys destroyed and the event's position, or
    nothing (already forgotten: position None)."""

    patient_id: uuid.UUID
    key_ids: tuple[uuid.UUID, ...]
    position: int | None

    @property
    def already_forgotten(self) -> bool:
        return self.position is None


def patient_stream(patient_id: uuid.UUID) -> str:
    """The stream of a patient's own events (what was done to the patient, not their consults)."""
    return f"patient-{patient_id}"


async def forget_patient(store: EventStore, projector: Projector, *, business_id: int, customer_id: str,
                         reason: str, metadata: EventMetadata, at: dt.datetime, event_id: uuid.UUID) -> ForgetOutcome:
    """Forget one customer's patient of one business; a second time is a no-op."""
    patient_id = domain.patient_id_for(business_id, customer_id)

    def event(destroyed: tuple[uuid.UUID, ...]) -> PatientForgotten:
        return PatientForgotten(patient_id=patient_id, customer_id=customer_id, key_ids=destroyed,
                                reason=reason, forgotten_at=at)

    # The patients read model is erased in the same transaction (what the projector will write
    # too, by the same evolve): when forget answers, no table shows the patient any more.
    done = await store.forget(business_id, patient_id, patient_stream(patient_id), event, event_id, metadata,
                              lambda conn, stored: apply_patients(conn, [stored]))
    if done is None:
        raise PatientUnknown(PatientUnknown.__doc__)
    if done.position is not None:
        # Then the projections apply the event at once, checkpoints and all (the patients row is
        # already the one they write), so `projections verify` agrees without waiting for a worker.
        await projector.catch_up(patient_stream(patient_id))
    return ForgetOutcome(patient_id, done.key_ids, done.position)
