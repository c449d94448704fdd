"""Schema evolution, pure: version-1 `consult.submitted` events, as the previous release wrote them,
read as version 2 (consent: null) through the upcaster chain; only version 2 can be written."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

import msgspec
import pytest

from events.codec import MismatchedTag, NotWritable, decode_payload, encode_payload, split_tag, tag_of, type_and_version
from events.types import (
    DECODE_ONLY_CLASSES,
    EVENT_CLASSES,
    ConsultSubmitted,
    ConsultSubmittedV1,
    Event,
    StoredEvent,
    TelehealthConsent,
)
from events.upcasting import UPCASTERS, upcast
from projections import consultations
from service import domain
from service.http.schemas import SubmissionIn, decode_body
from service.http.writes import canonical_body
from tests.support.old_releases import V1_FINGERPRINT_BUSINESS_1, V1_SUBMISSION_BODY, v1_payload
from tests.support.stored_events import NOW, PATIENT, stored

IDS = dict(submission_id=uuid.uuid4(), consultation_id=uuid.uuid4(), patient_id=uuid.uuid4())
CONSENT = TelehealthConsent(document_version="tc-2026-01", accepted_at=NOW - dt.timedelta(minutes=3))


def stored_v1(position: int = 5) -> StoredEvent:
    """A version-1 row as decode_record hands it on: recorded version 1, data upcast."""
    return StoredEvent(position=position, event_id=uuid.uuid4(), stream_id="slot", stream_version=1,
                       event_type="consult.submitted", schema_version=1, business_id=1,
                       data=decode_payload("consult.submitted", 1, v1_payload(**IDS)),
                       metadata=msgspec.Raw(b"{}"), recorded_at=NOW)


def test_a_version_1_submission_as_the_last_release_wrote_it_reads_as_version_2_without_consent():
    event = decode_payload("consult.submitted", 1, v1_payload(**IDS))
    assert type(event) is ConsultSubmitted and event.consent is None
    as_written = msgspec.json.decode(v1_payload(**IDS), type=ConsultSubmittedV1)
    assert msgspec.structs.asdict(event) == {**msgspec.structs.asdict(as_written), "consent": None}
    assert event.submission_id == IDS["submission_id"] and event.answers[0].answer == "yes"


def test_a_current_version_round_trips_unchanged_with_its_consent():
    event = ConsultSubmitted(**IDS, customer_id="c", product_id="p", patient=PATIENT, chief_complaint="cough",
                             submitted_at=NOW, consent=CONSENT)
    assert type_and_version(event) == ("consult.submitted", 2)
    assert decode_payload("consult.submitted", 2, encode_payload(event)) == event


def test_every_decode_only_version_reaches_the_current_version_of_its_type_one_step_at_a_time():
    current = {split_tag(tag_of(c))[0]: split_tag(tag_of(c))[1] for c in EVENT_CLASSES}
    for cls in DECODE_ONLY_CLASSES:
        event_type, version = split_tag(tag_of(cls))
        assert version < current[event_type]
        for step in range(version, current[event_type]):  # no gap in the chain
            assert (event_type, step) in UPCASTERS
    # and no step starts from a version nothing can decode
    decode_only = {split_tag(tag_of(c)) for c in DECODE_ONLY_CLASSES}
    assert set(UPCASTERS) == decode_only


def test_upcast_applies_the_steps_in_order_until_none_is_registered():
    seen: list[str] = []

    def step(name: str):
        def apply(event: Event) -> Event:
            seen.append(name)
            return event
        return apply

    steps = {("x.happened", 1): step("1→2"), ("x.happened", 2): step("2→3"), ("y.happened", 3): step("wrong type")}
    event = ConsultSubmittedV1(**IDS, customer_id="c", product_id="p", patient=PATIENT, chief_complaint="c",
                               submitted_at=NOW)
    assert upcast("x.happened", 1, event, steps) is event
    assert seen == ["1→2", "2→3"]
    seen.clear()
    upcast("x.happened", 3, event, steps)
    assert seen == []


def test_the_store_codec_refuses_to_write_a_version_1_event():
    old = msgspec.json.decode(v1_payload(**IDS), type=ConsultSubmittedV1)
    with pytest.raises(NotWritable):
        encode_payload(old)
    assert ConsultSubmittedV1 not in EVENT_CLASSES


def test_a_payload_whose_tag_disagrees_with_its_columns_is_refused():
    with pytest.raises(MismatchedTag):
        decode_payload("consult.submitted", 2, v1_payload(**IDS))


def test_the_domain_folds_a_version_1_submission_and_can_decide_it():
    state = domain.fold([stored_v1(position=5)])
    assert state.open is not None and state.open.consultation_id == IDS["consultation_id"]
    command = domain.DecideConsult(consultation_id=IDS["consultation_id"], decision="approved", reason="ok",
                                   clinician_id="clin_7", at=NOW)
    assert domain.decide_decision(command, state).consultation_id == IDS["consultation_id"]


def test_the_consultation_row_of_a_version_1_submission_has_no_consent():
    row = consultations.evolve(None, stored_v1())
    assert row is not None and row.status == "pending"
    assert (row.consent_document_version, row.consent_accepted_at) == (None, None)


def test_the_consultation_row_of_a_version_2_submission_has_its_consent():
    event = ConsultSubmitted(**IDS, customer_id="c", product_id="p", patient=PATIENT, chief_complaint="cough",
                             submitted_at=NOW, consent=CONSENT)
    row = consultations.evolve(None, stored(event))
    assert row is not None
    assert (row.consent_document_version, row.consent_accepted_at) == ("tc-2026-01", CONSENT.accepted_at)


def submit(**overrides) -> domain.SubmitConsult:
    fields = dict(submission_id=uuid.uuid4(), consultation_id=uuid.uuid4(), business_id=1, customer_id="cus_1",
                  product_id="prod_1", patient=PATIENT, chief_complaint="cough", medical_history=None,
                  answers=(), at=NOW)
    return domain.SubmitConsult(**{**fields, **overrides})


def test_the_domain_emits_version_2_with_the_consent_it_was_given():
    event = domain.decide_submission(submit(consent=CONSENT), domain.INITIAL_STATE)
    assert type_and_version(event) == ("consult.submitted", 2)
    assert isinstance(event, ConsultSubmitted) and event.consent == CONSENT
    assert b'"type":"consult.submitted.v2"' in encode_payload(event)


def test_a_consent_accepted_after_the_request_beyond_the_clock_skew_is_refused():
    skew = domain.CONSENT_CLOCK_SKEW
    late = TelehealthConsent(document_version="tc-1", accepted_at=NOW + skew + dt.timedelta(seconds=1))
    with pytest.raises(domain.InvalidCommand) as refused:
        domain.decide_submission(submit(consent=late), domain.INITIAL_STATE)
    assert refused.value.field == "consent.accepted_at"
    skewed = TelehealthConsent(document_version="tc-1", accepted_at=NOW + skew)
    assert domain.decide_submission(submit(consent=skewed), domain.INITIAL_STATE).consent == skewed


def test_a_body_without_consent_fingerprints_exactly_as_the_previous_release_did():
    for body in (V1_SUBMISSION_BODY, V1_SUBMISSION_BODY[:-1] + b',"consent":null}'):
        canonical = canonical_body(decode_body(body, SubmissionIn))
        assert canonical == V1_SUBMISSION_BODY
        assert hashlib.sha256(b"submit:1\x00" + canonical).hexdigest() == V1_FINGERPRINT_BUSINESS_1
    with_consent = V1_SUBMISSION_BODY[:-1] + b',"consent":{"document_version":"tc-1","accepted_at":"2026-01-01T00:00:00Z"}}'
    assert canonical_body(decode_body(with_consent, SubmissionIn)) == with_consent
