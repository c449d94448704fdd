"""The as-of fold's rules, without a database: which events count as committed at a time, and that the
fold is the projections' own `evolve`."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec
import pytest

from events.types import ConsultDecided, ConsultSubmitted, PatientDetails, StoredEvent
from projections.as_of import UNKNOWN_COMMIT_WINDOW, CommitTimeUnknown, committed_by, fold

AT = dt.datetime(2026, 3, 1, 14, 2, tzinfo=dt.UTC)
SECOND = dt.timedelta(seconds=1)


def test_a_known_commit_time_decides_whatever_the_start_time():
    assert committed_by(AT, AT, AT - SECOND)
    assert not committed_by(AT, AT + SECOND, AT - SECOND)  # started before, committed after: not yet


def test_an_unknown_commit_time_counts_by_start_only_far_enough_before():
    assert committed_by(AT, None, AT - UNKNOWN_COMMIT_WINDOW - SECOND)
    with pytest.raises(CommitTimeUnknown):
        committed_by(AT, None, AT - UNKNOWN_COMMIT_WINDOW + SECOND)


def stored(position: int, version: int, data: object) -> StoredEvent:
    return StoredEvent(position=position, event_id=uuid.uuid4(), stream_id="s", stream_version=version,
                       event_type="x", schema_version=1, business_id=1, data=data, metadata=msgspec.Raw(b"{}"),
                       recorded_at=AT)


def test_the_fold_applies_a_decision_to_its_consultation_and_approval():
    consultation, patient = uuid.uuid4(), uuid.uuid4()
    submitted = ConsultSubmitted(
        submission_id=uuid.uuid4(), consultation_id=consultation, patient_id=patient, customer_id="cus_a",
        product_id="p", patient=PatientDetails(first_name="A", last_name="B", email="a@b.c",
                                               date_of_birth=dt.date(1990, 1, 1)),
        chief_complaint="c", submitted_at=AT)
    decided = ConsultDecided(consultation_id=consultation, decision="approved", reason="r", clinician_id="c",
                             decided_at=AT + SECOND)
    tables = fold([stored(1, 1, submitted), stored(2, 2, decided)])
    assert tables["consultations"][consultation].status == "approved"
    assert tables["approvals"][consultation].clinician_id == "c"
    assert tables["patients"][(1, patient)].last_name == "B"
