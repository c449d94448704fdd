"""Events as the log hands them to a fold: payloads wrapped in StoredEvent, built in memory for pure tests."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec

from events.codec import type_and_version
from events.types import ConsultDecided, ConsultSubmitted, Event, PatientDetails, StoredEvent, SubmissionDeduplicated

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
PATIENT = PatientDetails(first_name="Ada", last_name="Lovelace", email="ada@example.com",
                         date_of_birth=dt.date(1990, 12, 10))


def stored(data: Event, version: int = 1, position: int = 1, *, stream_id: str = "s",
           business_id: int = 1) -> StoredEvent:
    """`data` as recorded at `position`, the `version`th event of `stream_id`."""
    event_type, schema_version = type_and_version(data)
    return StoredEvent(position=position, event_id=uuid.uuid4(), stream_id=stream_id, stream_version=version,
                       event_type=event_type, schema_version=schema_version, business_id=business_id,
                       data=data, metadata=msgspec.Raw(b"{}"), recorded_at=NOW)


def submitted(**overrides: Any) -> ConsultSubmitted:
    """A submission of customer cus_1 for prod_1, fresh ids unless given."""
    fields: dict[str, Any] = dict(
        submission_id=uuid.uuid4(), consultation_id=uuid.uuid4(), patient_id=uuid.uuid4(), customer_id="cus_1",
        product_id="prod_1", patient=PATIENT, chief_complaint="cough", submitted_at=NOW)
    return ConsultSubmitted(**{**fields, **overrides})


def decided(consultation_id: uuid.UUID, verdict: str = "approved", **overrides: Any) -> ConsultDecided:
    """A clinician's verdict on one consultation, an hour after NOW."""
    fields: dict[str, Any] = dict(consultation_id=consultation_id, decision=verdict, reason="Meets the criteria",
                                  clinician_id="clin_7", decided_at=NOW + dt.timedelta(hours=1))
    return ConsultDecided(**{**fields, **overrides})


def deduplicated(open_submission: ConsultSubmitted, open_position: int) -> SubmissionDeduplicated:
    """A second submission for the same slot, answered with the open one."""
    return SubmissionDeduplicated(
        request_submission_id=uuid.uuid4(), open_submission_id=open_submission.submission_id,
        consultation_id=open_submission.consultation_id, open_event_id=uuid.uuid4(), open_position=open_position,
        received_at=NOW + dt.timedelta(minutes=5))
