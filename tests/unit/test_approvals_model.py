"""The approvals read model, given/when/then: the clinicians' queue gets a pending approval per
submission, which its decision closes; nothing else touches it."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from projections import approvals
from projections.approvals import ApprovalRow
from tests.support.specs import spec
from tests.support.stored_events import NOW, decided, deduplicated, stored, submitted

SLOT = "slot-b4-cus_1-prod_1"
SUBMISSION = submitted(consultation_id=uuid.UUID("00000000-0000-4000-8000-000000000002"), customer_id="cus_1",
                       product_id="prod_1")
SUBMITTED = stored(SUBMISSION, version=1, position=40, stream_id=SLOT, business_id=4)
PENDING = ApprovalRow(consultation_id=SUBMISSION.consultation_id, business_id=4, customer_id="cus_1",
                      product_id="prod_1", status="pending", requested_at=NOW, decided_at=None, clinician_id=None,
                      position=40)
DECIDED_AT = NOW + dt.timedelta(hours=2)

approvals_spec = spec(approvals.evolve)


def decision(verdict: str = "approved"):
    """The clinician's verdict on SUBMISSION, recorded on its slot stream."""
    data = decided(SUBMISSION.consultation_id, verdict, clinician_id="clin_9", decided_at=DECIDED_AT)
    return stored(data, version=2, position=41, stream_id=SLOT, business_id=4)


def test_a_submission_queues_a_pending_approval_with_every_field():
    approvals_spec.given().when(SUBMITTED).then(PENDING)


@pytest.mark.parametrize("verdict", ["approved", "rejected"])
def test_a_decision_closes_the_approval_with_its_clinician_and_keeps_the_queue_position(verdict):
    approvals_spec.given(SUBMITTED).when(decision(verdict)).then(ApprovalRow(
        consultation_id=SUBMISSION.consultation_id, business_id=4, customer_id="cus_1", product_id="prod_1",
        status=verdict, requested_at=NOW, decided_at=DECIDED_AT, clinician_id="clin_9", position=40))


def test_a_decision_for_an_approval_never_seen_yields_no_row():
    # None, not a made-up row: projections/writers.py turns it into a LookupError.
    approvals_spec.given().when(decision()).then(None)


def test_a_deduplicated_submission_leaves_the_pending_approval_as_it_was():
    dedup = stored(deduplicated(SUBMISSION, open_position=40), version=1, position=44, stream_id="request-2")
    approvals_spec.given(SUBMITTED).when(dedup).then_unchanged()
    approvals_spec.given().when(dedup).then(None)


def test_the_key_is_the_consultation_of_a_submission_or_decision_and_never_of_a_deduplication():
    assert approvals.key(SUBMITTED) == SUBMISSION.consultation_id
    assert approvals.key(decision()) == SUBMISSION.consultation_id
    assert approvals.key(stored(deduplicated(SUBMISSION, open_position=40), position=44)) is None
