"""The immutable record: every event type, with a stable versioned tag.

Tags read `<aggregate>.<fact in the past tense>.v<schema version>`. A tag is
never reused for a different shape: a new shape gets a new version, and old
events keep decoding with the old class, then are upcast to the current one
(events/upcasting.py) so that everything downstream sees only current shapes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

import msgspec

# What a personal field reads as once its patient's data key is destroyed (events/privacy.py).
ERASED = "[erased]"
Erased = Literal["[erased]"]


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every event payload."""


class PatientDetails(msgspec.Struct, frozen=True, kw_only=True):
    """What the patient told us about themselves, as submitted."""

    first_name: str
    last_name: str
    email: str
    date_of_birth: dt.date
    phone: str | None = None


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """One answer to an intake questionnaire question."""

    question_id: str
    answer: str


class TelehealthConsent(msgspec.Struct, frozen=True, kw_only=True):
    """The telehealth consent the patient accepted: which document, and when."""

    document_version: str
    accepted_at: dt.datetime


class ConsultSubmitted(Event, frozen=True, kw_only=True, tag="consult.submitted.v2"):
    """A patient submitted a consult request; a pending consultation exists.

    Version 2 added `consent`; version 1 events read as this with `consent = None`
    (events/upcasting.py).
    """

    submission_id: uuid.UUID
    consultation_id: uuid.UUID
    patient_id: uuid.UUID
    customer_id: str
    product_id: str
    patient: PatientDetails | Erased
    chief_complaint: str
    medical_history: str | None = None
    answers: tuple[Answer, ...] | Erased = ()
    submitted_at: dt.datetime
    consent: TelehealthConsent | None = None


class ConsultSubmittedV1(Event, frozen=True, kw_only=True, tag="consult.submitted.v1"):
    """Version 1 of `consult.submitted`, as releases before consent wrote it. Decode-only:
    it is not in EVENT_CLASSES, so the store refuses to write it (events/codec.py)."""

    submission_id: uuid.UUID
    consultation_id: uuid.UUID
    patient_id: uuid.UUID
    customer_id: str
    product_id: str
    patient: PatientDetails | Erased
    chief_complaint: str
    medical_history: str | None = None
    answers: tuple[Answer, ...] | Erased = ()
    submitted_at: dt.datetime


class SubmissionDeduplicated(Event, frozen=True, kw_only=True, tag="consult.submission_deduplicated.v1"):
    """A submission arrived under a new idempotency key while one was already open
    for the same (business, customer, product); it was answered with the open one.

    Recorded on the request's own stream so that its key keeps that answer
    forever, like every other key, without contending for the open one's stream.
    """

    request_submission_id: uuid.UUID
    open_submission_id: uuid.UUID
    consultation_id: uuid.UUID
    open_event_id: uuid.UUID
    open_position: int
    received_at: dt.datetime


class ConsultDecided(Event, frozen=True, kw_only=True, tag="consult.decided.v1"):
    """A clinician approved or rejected a pending consultation."""

    consultation_id: uuid.UUID
    decision: str  # "approved" | "rejected"
    reason: str
    clinician_id: str
    decided_at: dt.datetime


class PatientForgotten(Event, frozen=True, kw_only=True, tag="patient.forgotten.v1"):
    """A patient's data keys were destroyed: every personal field of their earlier events now
    reads as ERASED. Who asked is the event's actor; it holds no personal data itself."""

    patient_id: uuid.UUID
    customer_id: str
    key_ids: tuple[uuid.UUID, ...]  # the data keys destroyed
    reason: str
    forgotten_at: dt.datetime


class PartnerStatusReported(Event, frozen=True, kw_only=True, tag="partner.status_reported.v1"):
    """A partner (pharmacy, lab, telehealth provider) reported, by a signed callback, where it stands
    with an approved consultation. Identifiers and a status only: a callback's free text is not kept.

    Recorded on the consultation's slot stream with the callback's `webhook-id` as its
    idempotency key, so a callback delivered any number of times is one event."""

    consultation_id: uuid.UUID
    partner: str
    status: str  # "accepted" | "in_progress" | "completed" | "cancelled"
    webhook_id: str
    reference: str | None = None  # the partner's own id for the order, if it sent one
    reported_at: dt.datetime  # the callback's signed webhook-timestamp
    received_at: dt.datetime


# What the domain can emit and the store can write: the current version of each event type.
EVENT_CLASSES: tuple[type[Event], ...] = (ConsultSubmitted, SubmissionDeduplicated, ConsultDecided, PatientForgotten,
                                          PartnerStatusReported)
EventPayload = ConsultSubmitted | SubmissionDeduplicated | ConsultDecided | PatientForgotten | PartnerStatusReported
# Earlier versions, only ever read: the log keeps them forever, and events/upcasting.py turns
# each into the current version of its type.
DECODE_ONLY_CLASSES: tuple[type[Event], ...] = (ConsultSubmittedV1,)


class EventMetadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Who caused an event and in answer to what; never patient data."""

    request_id: str
    actor: str  # "api_key:<id>" or "cli:<user>"
    correlation_id: str
    causation_id: str | None = None


class Idempotency(msgspec.Struct, frozen=True):
    """The client's idempotency key and the fingerprint of the request it was first used with."""

    key: str
    fingerprint: bytes


class StoredEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the log, decoded: the event with where and when it was recorded."""

    position: int
    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    event_type: str
    schema_version: int
    business_id: int
    data: Event
    metadata: msgspec.Raw
    recorded_at: dt.datetime
