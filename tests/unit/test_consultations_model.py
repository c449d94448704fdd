"""The consultations read model, given/when/then: a submission opens a pending row, its decision
fills in the verdict and moves the version; nothing else touches it."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from projections import consultations
from projections.consultations import ConsultationRow
from tests.support.specs import spec
from tests.support.stored_events import NOW, decided, deduplicated, stored, submitted

SLOT = "slot-b4-cus_1-prod_1"
SUBMISSION = submitted(submission_id=uuid.UUID("00000000-0000-4000-8000-000000000001"),
                       consultation_id=uuid.UUID("00000000-0000-4000-8000-000000000002"),
                       patient_id=uuid.UUID("00000000-0000-4000-8000-000000000003"))
SUBMITTED = stored(SUBMISSION, version=1, position=40, stream_id=SLOT, business_id=4)
PENDING = ConsultationRow(
    consultation_id=SUBMISSION.consultation_id, business_id=4, submission_id=SUBMISSION.submission_id,
    patient_id=SUBMISSION.patient_id, customer_id="cus_1", product_id="prod_1", status="pending",
    submitted_at=NOW, decided_at=None, decision=None, reason=None, clinician_id=None, stream_id=SLOT, version=1,
    position=40)
DECIDED_AT = NOW + dt.timedelta(hours=2)

consultations_spec = spec(consultations.evolve)


def decision(verdict: str = "approved", *, version: int = 2, position: int = 41):
    """The clinician's verdict on SUBMISSION, recorded on its slot stream."""
    data = decided(SUBMISSION.consultation_id, verdict, reason=f"{verdict}: see notes", clinician_id="clin_9",
                   decided_at=DECIDED_AT)
    return stored(data, version=version, position=position, stream_id=SLOT, business_id=4)


def test_a_submission_opens_a_pending_consultation_with_every_field():
    consultations_spec.given().when(SUBMITTED).then(PENDING)


@pytest.mark.parametrize("verdict", ["approved", "rejected"])
def test_a_decision_records_the_verdict_and_the_stream_version_but_keeps_the_submission_position(verdict):
    # `position` orders the lists by submission, so a decision must not move the row.
    consultations_spec.given(SUBMITTED).when(decision(verdict)).then(ConsultationRow(
        consultation_id=SUBMISSION.consultation_id, business_id=4, submission_id=SUBMISSION.submission_id,
        patient_id=SUBMISSION.patient_id, customer_id="cus_1", product_id="prod_1", status=verdict,
        submitted_at=NOW, decided_at=DECIDED_AT, decision=verdict, reason=f"{verdict}: see notes",
        clinician_id="clin_9", stream_id=SLOT, version=2, position=40))


def test_a_resubmission_on_the_slot_stream_opens_its_own_row_at_its_stream_version():
    again = submitted(customer_id="cus_1", product_id="prod_1", submitted_at=DECIDED_AT)
    consultations_spec.given().when(stored(again, version=3, position=57, stream_id=SLOT, business_id=4)).then(
        ConsultationRow(consultation_id=again.consultation_id, business_id=4, submission_id=again.submission_id,
                        patient_id=again.patient_id, customer_id="cus_1", product_id="prod_1", status="pending",
                        submitted_at=DECIDED_AT, decided_at=None, decision=None, reason=None, clinician_id=None,
                        stream_id=SLOT, version=3, position=57))


def test_a_decision_for_a_consultation_never_seen_yields_no_row():
    # None, not a made-up row: projections/writers.py turns it into a LookupError, so a
    # projection that skipped a submission fails loudly instead of writing half a row.
    consultations_spec.given().when(decision()).then(None)


def test_a_deduplicated_submission_leaves_the_open_consultation_as_it_was():
    dedup = stored(deduplicated(SUBMISSION, open_position=40), version=1, position=44, stream_id="request-2")
    consultations_spec.given(SUBMITTED).when(dedup).then_unchanged()
    consultations_spec.given().when(dedup).then(None)


def test_the_key_is_the_consultation_of_a_submission_or_decision_and_never_of_a_deduplication():
    assert consultations.key(SUBMITTED) == SUBMISSION.consultation_id
    assert consultations.key(decision()) == SUBMISSION.consultation_id
    # The deduplication names the open consultation but lives on the request's own stream: a
    # consultation's row is touched only by its own stream's events, whose checkpoint lock the
    # writer holds while it loads and writes the row (projections/writers.py).
    assert consultations.key(stored(deduplicated(SUBMISSION, open_position=40), position=44)) is None
