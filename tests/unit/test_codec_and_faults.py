"""Event codec round trips and the fault-injection switchboard."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.codec import UnknownEventType, decode_payload, encode_payload, type_and_version
from events.types import EVENT_CLASSES, ConsultDecided
from service.faults import FaultConfigError, Faults, InjectedFault


@given(reason=st.text(max_size=200), clinician=st.text(min_size=1, max_size=50))
def test_events_round_trip_through_the_log_columns(reason, clinician):
    event = ConsultDecided(consultation_id=uuid.uuid4(), decision="approved", reason=reason,
                           clinician_id=clinician, decided_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert decode_payload(*type_and_version(event), encode_payload(event).decode()) == event


def test_every_tag_is_unique_and_versioned():
    tags = [c.__struct_config__.tag for c in EVENT_CLASSES]
    assert len(tags) == len(set(tags))
    assert all(tag.rsplit(".v", 1)[1].isdigit() for tag in tags)


def test_an_unknown_event_type_is_an_error_not_a_guess():
    with pytest.raises(UnknownEventType):
        decode_payload("consult.submitted", 99, "{}")


def test_faults_are_refused_in_production():
    with pytest.raises(FaultConfigError, match="production"):
        Faults("append.after_commit=crash", environment="production")
    assert not Faults("", environment="production").enabled


@pytest.mark.parametrize("spec", ["nowhere=crash", "append.after_commit=explode", "append.after_commit=delay",
                                  "append.after_commit=delay:x"])
def test_malformed_fault_specs_are_refused(spec):
    with pytest.raises(FaultConfigError):
        Faults(spec, environment="development")


async def test_error_fault_fails_like_an_unavailable_database():
    faults = Faults("request.before_append=error", environment="development")
    with pytest.raises(InjectedFault):
        await faults.hit("request.before_append")
    await faults.hit("append.after_commit")  # other points untouched
