"""The consult decider: commands, state, `decide` and `evolve`. Pure: no I/O, no clock, no uuid4.

One stream per (business, customer, product) — the *slot* — holds that
customer's consultations for that product in order. At most one is open: the
stream version is the lock, enforced by the log's unique (stream, version).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

import msgspec

from events.ids import name_uuid  # deterministic (uuid5), pure: the domain draws no random ids
from events.types import (
    Answer,
    ConsultDecided,
    ConsultSubmitted,
    PatientDetails,
    StoredEvent,
    SubmissionDeduplicated,
    TelehealthConsent,
)

MAX_AGE_YEARS = 130
# A consent's accepted_at may be this far ahead of our clock: the client's servers stamp it
# with their own clock, and refusing a consent accepted "now" over a second of drift would
# send the patient back for nothing. Beyond it, the time is wrong, not skewed.
CONSENT_CLOCK_SKEW = dt.timedelta(seconds=60)
_SLOT_NAMESPACE = uuid.UUID("6f1c1f3e-8d0b-4f5e-9a55-2b1f0d7c9e10")
_PATIENT_NAMESPACE = uuid.UUID("0b7e4a52-6c1d-4c8e-8f0a-5d3c2e1b9a77")
_KEY = msgspec.json.Encoder()


class DomainError(Exception):
    """A command the current state does not allow."""


class InvalidCommand(DomainError):
    """The command is not valid."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class AlreadyDecided(DomainError):
    """This consultation has already been decided."""


class ConsultationNotFound(DomainError):
    """No such consultation for this business."""


class SubmitConsult(msgspec.Struct, frozen=True, kw_only=True):
    """Open a consultation for a patient's consult request."""

    submission_id: uuid.UUID
    consultation_id: uuid.UUID
    business_id: int
    customer_id: str
    product_id: str
    patient: PatientDetails
    chief_complaint: str
    medical_history: str | None
    answers: tuple[Answer, ...]
    at: dt.datetime
    consent: TelehealthConsent | None = None


class DecideConsult(msgspec.Struct, frozen=True, kw_only=True):
    """Approve or reject a pending consultation."""

    consultation_id: uuid.UUID
    decision: str
    reason: str
    clinician_id: str
    at: dt.datetime


class OpenSubmission(msgspec.Struct, frozen=True, kw_only=True):
    """The pending consultation of a slot, and where its submission sits in the log."""

    submission_id: uuid.UUID
    consultation_id: uuid.UUID
    event_id: uuid.UUID
    position: int


class SlotState(msgspec.Struct, frozen=True, kw_only=True):
    """What decisions about one (business, customer, product) slot need to know."""

    version: int = 0
    open: OpenSubmission | None = None


INITIAL_STATE = SlotState()


def slot_stream(business_id: int, customer_id: str, product_id: str) -> str:
    """The deterministic stream of a (business, customer, product) slot; carries no patient data."""
    return f"consult-{name_uuid(_SLOT_NAMESPACE, _KEY.encode([business_id, customer_id, product_id]).decode())}"


def request_stream(submission_id: uuid.UUID) -> str:
    """The stream of one deduplicated submission request."""
    return f"submission-{submission_id}"


def patient_id_for(business_id: int, customer_id: str) -> uuid.UUID:
    """One patient per (business, customer_id), derivable anywhere."""
    return name_uuid(_PATIENT_NAMESPACE, _KEY.encode([business_id, customer_id]).decode())


def evolve(state: SlotState, stored: StoredEvent) -> SlotState:
    """The slot after one of its events."""
    event = stored.data
    if isinstance(event, ConsultSubmitted):
        opened = OpenSubmission(submission_id=event.submission_id, consultation_id=event.consultation_id,
                                event_id=stored.event_id, position=stored.position)
        return SlotState(version=stored.stream_version, open=opened)
    if isinstance(event, ConsultDecided):
        return SlotState(version=stored.stream_version, open=None)
    return SlotState(version=stored.stream_version, open=state.open)


def fold(events: Iterable[StoredEvent]) -> SlotState:
    """The slot's state from its whole stream."""
    state = INITIAL_STATE
    for stored in events:
        state = evolve(state, stored)
    return state


def decide_submission(command: SubmitConsult, state: SlotState) -> ConsultSubmitted | SubmissionDeduplicated:
    """A new pending consultation, or — if one is open — the record that this request was answered by it."""
    _check_date_of_birth(command.patient.date_of_birth, command.at.date())
    if command.consent is not None and command.consent.accepted_at > command.at + CONSENT_CLOCK_SKEW:
        raise InvalidCommand("consent.accepted_at", "must not be in the future")
    if state.open is not None:
        return SubmissionDeduplicated(
            request_submission_id=command.submission_id, open_submission_id=state.open.submission_id,
            consultation_id=state.open.consultation_id, open_event_id=state.open.event_id,
            open_position=state.open.position, received_at=command.at,
        )
    return ConsultSubmitted(
        submission_id=command.submission_id, consultation_id=command.consultation_id,
        patient_id=patient_id_for(command.business_id, command.customer_id),
        customer_id=command.customer_id, product_id=command.product_id, patient=command.patient,
        chief_complaint=command.chief_complaint, medical_history=command.medical_history,
        answers=command.answers, submitted_at=command.at, consent=command.consent,
    )


def decide_decision(command: DecideConsult, state: SlotState) -> ConsultDecided:
    """The decision on the slot's open consultation; the slot is known to hold the consultation."""
    if state.open is None or state.open.consultation_id != command.consultation_id:
        raise AlreadyDecided(AlreadyDecided.__doc__)
    return ConsultDecided(consultation_id=command.consultation_id, decision=command.decision,
                          reason=command.reason, clinician_id=command.clinician_id, decided_at=command.at)


def _check_date_of_birth(born: dt.date, today: dt.date) -> None:
    if born >= today:
        raise InvalidCommand("patient.date_of_birth", "must be in the past")
    try:
        oldest = today.replace(year=today.year - MAX_AGE_YEARS)
    except ValueError:  # 29 February in a year that has none
        oldest = today.replace(year=today.year - MAX_AGE_YEARS, day=28)
    if born < oldest:
        raise InvalidCommand("patient.date_of_birth", f"must be at most {MAX_AGE_YEARS} years ago")
