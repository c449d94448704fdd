"""The patients read model, given/when/then: one row per (business, customer), details from the
submission with the highest log position, whatever order the projector meets them in."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from events.types import ERASED, PatientDetails, PatientForgotten
from projections import patients
from projections.patients import PatientRow
from tests.support.specs import fold, spec
from tests.support.stored_events import NOW, decided, deduplicated, stored, submitted

PATIENT_ID = uuid.UUID("00000000-0000-4000-8000-0000000000aa")
ADA = PatientDetails(first_name="Ada", last_name="Lovelace", email="ada@example.com", phone="+15555550100",
                     date_of_birth=dt.date(1990, 12, 10))
ADA_MARRIED = PatientDetails(first_name="Ada", last_name="King", email="countess@example.com", phone=None,
                             date_of_birth=dt.date(1990, 12, 10))
LATER = NOW + dt.timedelta(days=3)

patients_spec = spec(patients.evolve)


def ada_submits(details: PatientDetails = ADA, *, position: int, at: dt.datetime = NOW, product: str = "prod_1"):
    """Customer cus_1 (patient PATIENT_ID) of business 4 submits for `product`, recorded at `position`."""
    data = submitted(patient_id=PATIENT_ID, customer_id="cus_1", product_id=product, patient=details, submitted_at=at)
    return stored(data, position=position, stream_id=f"slot-{product}", business_id=4)


def ada_row(details: PatientDetails = ADA, *, position: int, at: dt.datetime = NOW) -> PatientRow:
    return PatientRow(business_id=4, patient_id=PATIENT_ID, customer_id="cus_1", first_name=details.first_name,
                      last_name=details.last_name, email=details.email, phone=details.phone,
                      date_of_birth=details.date_of_birth, source_position=position, updated_at=at)


def test_a_first_submission_creates_the_patient_with_every_field():
    patients_spec.given().when(ada_submits(position=5)).then(ada_row(position=5))


def test_a_later_submission_replaces_the_details_and_the_source_position():
    patients_spec.given(ada_submits(position=5)).when(
        ada_submits(ADA_MARRIED, position=9, at=LATER, product="prod_2")).then(
        ada_row(ADA_MARRIED, position=9, at=LATER))


def test_an_older_submission_arriving_later_leaves_the_newer_details():
    # Two slots' streams of one patient are projected independently, so the log's order is
    # not the projector's: position, not arrival, decides whose details stand.
    patients_spec.given(ada_submits(ADA_MARRIED, position=9, at=LATER, product="prod_2")).when(
        ada_submits(position=5)).then_unchanged()


def test_the_same_submission_delivered_again_changes_nothing():
    patients_spec.given(ada_submits(position=5)).when(ada_submits(ADA_MARRIED, position=5)).then_unchanged()


def ada_forgotten(*, position: int):
    """Customer cus_1's data keys are destroyed (intake patients forget), recorded at `position`."""
    data = PatientForgotten(patient_id=PATIENT_ID, customer_id="cus_1", key_ids=(uuid.uuid4(),), reason="asked",
                            forgotten_at=LATER)
    return stored(data, position=position, stream_id=f"patient-{PATIENT_ID}", business_id=4)


def test_forgetting_leaves_a_row_with_nothing_personal_in_it():
    patients_spec.given(ada_submits(position=5)).when(ada_forgotten(position=7)).then(
        patients.erased(4, PATIENT_ID, "cus_1", 7, LATER))


def test_a_submission_read_after_its_key_was_destroyed_erases_rather_than_shows():
    # A rebuild after the forget reads the submission's personal fields as ERASED.
    patients_spec.given().when(erased_submission(position=5)).then(
        patients.erased(4, PATIENT_ID, "cus_1", 5, NOW))


def erased_submission(*, position: int):
    data = submitted(patient_id=PATIENT_ID, customer_id="cus_1", product_id="prod_1", patient=ERASED,
                     submitted_at=NOW)
    return stored(data, position=position, stream_id="slot-prod_1", business_id=4)


def test_a_submission_after_the_forget_brings_new_details_and_an_older_one_does_not():
    patients_spec.given(ada_submits(position=5), ada_forgotten(position=7)).when(
        ada_submits(ADA_MARRIED, position=9, at=LATER, product="prod_2")).then(
        ada_row(ADA_MARRIED, position=9, at=LATER))
    patients_spec.given(ada_forgotten(position=7)).when(ada_submits(position=5)).then_unchanged()


def test_decisions_and_deduplications_leave_the_patient_as_it_was():
    first = ada_submits(position=5)
    patients_spec.given(first).when(stored(decided(first.data.consultation_id), 2, 6)).then_unchanged()
    patients_spec.given(first).when(stored(deduplicated(first.data, 5), 1, 7)).then_unchanged()


def test_an_event_that_is_not_a_submission_creates_no_patient():
    patients_spec.given().when(stored(decided(uuid.uuid4()), 2, 6)).then(None)


def test_the_key_is_the_business_and_patient_of_a_submission_and_nothing_else():
    first = ada_submits(position=5)
    assert patients.key(first) == (4, PATIENT_ID)
    assert patients.key(stored(decided(first.data.consultation_id), 2, 6)) is None
    assert patients.key(stored(deduplicated(first.data, 5), 1, 7)) is None


@settings(max_examples=200, deadline=None)
@given(positions=st.lists(st.integers(1, 10**12), min_size=1, max_size=8, unique=True), data=st.data())
def test_any_order_and_any_redelivery_of_submissions_folds_to_the_highest_position(positions, data):
    order = data.draw(st.permutations(positions), label="order")
    redelivered = data.draw(st.lists(st.sampled_from(positions), max_size=8), label="redelivered")

    def details(position: int) -> PatientDetails:
        return msgspec.structs.replace(ADA, first_name=f"Ada{position}")

    def at(position: int) -> dt.datetime:
        return NOW + dt.timedelta(microseconds=position)

    events = [ada_submits(details(p), position=p, at=at(p)) for p in [*order, *redelivered]]
    newest = max(positions)
    assert fold(patients.evolve, events) == ada_row(details(newest), position=newest, at=at(newest))
