"""The consult decider, given/when/then: pure functions, no I/O."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.types import ConsultDecided, ConsultSubmitted, PatientDetails, SubmissionDeduplicated
from service import domain
from tests.support.stored_events import NOW, PATIENT, stored


def submit(**overrides) -> domain.SubmitConsult:
    """A valid command for customer cus_1 and prod_1 of business 1, fresh ids unless given."""
    fields = dict(submission_id=uuid.uuid4(), consultation_id=uuid.uuid4(), business_id=1, customer_id="cus_1",
                  product_id="prod_1", patient=PATIENT, chief_complaint="cough", medical_history=None,
                  answers=(), at=NOW)
    return domain.SubmitConsult(**{**fields, **overrides})


def test_first_submission_opens_a_pending_consultation():
    command = submit()
    event = domain.decide_submission(command, domain.INITIAL_STATE)
    assert isinstance(event, ConsultSubmitted)
    assert event.consultation_id == command.consultation_id and event.submitted_at == NOW
    assert event.patient_id == domain.patient_id_for(1, "cus_1")


def test_second_open_submission_is_answered_with_the_first():
    first = domain.decide_submission(submit(), domain.INITIAL_STATE)
    state = domain.fold([stored(first, 1, position=7)])
    second = domain.decide_submission(submit(), state)
    assert isinstance(second, SubmissionDeduplicated)
    assert (second.open_submission_id, second.open_position) == (first.submission_id, 7)


def test_after_a_decision_the_same_customer_may_submit_again():
    first = domain.decide_submission(submit(), domain.INITIAL_STATE)
    decision = domain.decide_decision(domain.DecideConsult(
        consultation_id=first.consultation_id, decision="approved", reason="ok", clinician_id="c", at=NOW),
        domain.fold([stored(first, 1)]))
    state = domain.fold([stored(first, 1), stored(decision, 2)])
    assert state.open is None and state.version == 2
    assert isinstance(domain.decide_submission(submit(), state), ConsultSubmitted)


def test_a_decided_consultation_cannot_be_decided_again():
    first = domain.decide_submission(submit(), domain.INITIAL_STATE)
    done = ConsultDecided(consultation_id=first.consultation_id, decision="rejected", reason="no",
                          clinician_id="c", decided_at=NOW)
    with pytest.raises(domain.AlreadyDecided):
        domain.decide_decision(domain.DecideConsult(consultation_id=first.consultation_id, decision="approved",
                                                    reason="ok", clinician_id="c", at=NOW),
                               domain.fold([stored(first, 1), stored(done, 2)]))


@pytest.mark.parametrize("born", [dt.date(2026, 11, 22), dt.date(2030, 1, 1), dt.date(1896, 11, 21)])
def test_date_of_birth_must_be_past_and_within_130_years(born):
    patient = PatientDetails(first_name="A", last_name="B", email="a@b.co", date_of_birth=born)
    with pytest.raises(domain.InvalidCommand) as error:
        domain.decide_submission(submit(patient=patient), domain.INITIAL_STATE)
    assert error.value.field == "patient.date_of_birth"


def test_a_leap_day_clock_does_not_break_the_age_limit():
    leap = dt.datetime(2028, 2, 29, tzinfo=dt.UTC)
    assert isinstance(domain.decide_submission(submit(at=leap), domain.INITIAL_STATE), ConsultSubmitted)


@given(st.integers(1, 10**9), st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40),
       st.integers(1, 10**9), st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_slot_streams_are_deterministic_and_distinct(b1, c1, p1, b2, c2, p2):
    assert domain.slot_stream(b1, c1, p1) == domain.slot_stream(b1, c1, p1)
    if (b1, c1, p1) != (b2, c2, p2):
        assert domain.slot_stream(b1, c1, p1) != domain.slot_stream(b2, c2, p2)


def test_slot_stream_ids_carry_no_customer_data():
    assert "cus_secret" not in domain.slot_stream(1, "cus_secret", "prod")
