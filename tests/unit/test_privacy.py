"""Sealing personal fields, without a database: what is encrypted, what stays clear, what a moved or
relabelled ciphertext and a destroyed key read as, and how the KEK configuration is refused."""

from __future__ import annotations

import base64
import datetime as dt
import os
import uuid

import msgspec
import pytest

from events.privacy import (
    PERSONAL_FIELDS,
    KeyEncryptionKeyError,
    KeyEncryptionKeys,
    Keyring,
    Undecryptable,
    open_json,
    open_parts,
)
from events.types import ERASED, Answer, ConsultDecided, ConsultSubmitted, PatientDetails
from service.keyring import load_keks
from service.settings import Settings, SettingsError


@pytest.fixture
def keyring() -> Keyring:
    return Keyring(KeyEncryptionKeys([os.urandom(32)]))


def submitted() -> ConsultSubmitted:
    return ConsultSubmitted(
        submission_id=uuid.uuid4(), consultation_id=uuid.uuid4(), patient_id=uuid.uuid4(), customer_id="cus_9",
        product_id="prod_1", patient=PatientDetails(first_name="Grace", last_name="Hopper", email="g@navy.mil",
                                                   date_of_birth=dt.date(1906, 12, 9)),
        chief_complaint="Headache", medical_history="Migraine", answers=(Answer(question_id="q1", answer="no"),),
        submitted_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


def test_personal_fields_are_ciphertext_and_the_rest_stays_clear(keyring):
    event, event_id = submitted(), uuid.uuid4()
    key = keyring.new_key(1, event.patient_id)
    stored = keyring.seal(event, event_id, key)
    clear = msgspec.json.decode(stored)
    assert not {"patient", "chief_complaint", "medical_history", "answers"} & set(clear)
    assert (clear["customer_id"], clear["product_id"], clear["sealed"]["key_id"]) == ("cus_9", "prod_1", str(key.key_id))
    for secret in (b"Hopper", b"g@navy.mil", b"1906-12-09", b"Headache", b"Migraine"):
        assert secret not in stored
    assert keyring.open("consult.submitted", 2, stored, event_id, key.aead) == event


def test_an_opened_payload_is_its_clear_members_then_the_personal_ones_as_one_encoding(keyring):
    event, event_id = submitted(), uuid.uuid4()
    key = keyring.new_key(1, event.patient_id)
    stored = keyring.seal(event, event_id, key)
    members = msgspec.json.decode(stored, type=dict[str, msgspec.Raw])
    del members["sealed"]
    written = msgspec.json.decode(msgspec.json.encode(event), type=dict[str, msgspec.Raw])
    members.update((name, written[name]) for name in ("patient", "chief_complaint", "medical_history", "answers"))
    assert open_json("consult.submitted", stored, event_id, key.aead) == msgspec.json.encode(members)


def test_a_ciphertext_under_another_event_id_or_key_does_not_decrypt(keyring):
    event, event_id = submitted(), uuid.uuid4()
    key = keyring.new_key(1, event.patient_id)
    stored = keyring.seal(event, event_id, key)
    with pytest.raises(Undecryptable, match="does not decrypt"):
        keyring.open("consult.submitted", 2, stored, uuid.uuid4(), key.aead)  # moved to another event
    with pytest.raises(Undecryptable):
        keyring.open("consult.submitted", 2, stored, event_id, keyring.new_key(1, event.patient_id).aead)


def test_a_payload_taken_apart_as_the_jsonl_replay_reads_it_opens_to_the_same_bytes(keyring):
    event, event_id = submitted(), uuid.uuid4()
    key = keyring.new_key(1, event.patient_id)
    stored = keyring.seal(event, event_id, key)
    members = msgspec.json.decode(stored, type=dict[str, msgspec.Raw])
    sealed = msgspec.json.decode(members.pop("sealed"))
    clear, ciphertext = msgspec.json.encode(members), msgspec.json.encode(sealed["ciphertext"])
    ids = str(event_id).encode(), str(key.key_id).encode()
    fields = PERSONAL_FIELDS["consult.submitted"]
    assert open_parts(fields, clear, ciphertext, *ids, key.aead) == open_json("consult.submitted", stored, event_id,
                                                                              key.aead)
    assert open_parts(fields, clear, ciphertext, *ids, None) == open_json("consult.submitted", stored, event_id, None)
    moved = str(uuid.uuid4()).encode(), ids[1]
    short = msgspec.json.encode(base64.b64encode(b"12345").decode())
    for parts in ((ciphertext, *moved), (short, *ids)):  # another event's id; a ciphertext shorter than its nonce
        with pytest.raises(Undecryptable, match="does not decrypt"):
            open_parts(fields, clear, *parts, key.aead)


def test_an_envelope_altered_into_something_that_is_not_one_reads_as_undecryptable_not_a_decode_error(keyring):
    event, event_id = submitted(), uuid.uuid4()
    key = keyring.new_key(1, event.patient_id)
    members = msgspec.json.decode(keyring.seal(event, event_id, key))
    fields = PERSONAL_FIELDS["consult.submitted"]
    for altered in ({**members["sealed"], "ciphertext": "not base64!"}, {"key_id": "not a uuid"}, "a string", None):
        stored = msgspec.json.encode({**members, "sealed": altered})
        with pytest.raises(Undecryptable, match="does not decrypt"):
            open_json("consult.submitted", stored, event_id, key.aead)
    clear = msgspec.json.encode({name: value for name, value in members.items() if name != "sealed"})
    with pytest.raises(Undecryptable, match=str(event_id)):
        open_json("consult.submitted", clear, event_id, key.aead)
    with pytest.raises(Undecryptable, match=str(event_id)):
        open_parts(fields, clear, b'"not base64!"', str(event_id).encode(), str(key.key_id).encode(), key.aead)


def test_a_destroyed_key_reads_every_personal_field_as_erased(keyring):
    event, event_id = submitted(), uuid.uuid4()
    opened = keyring.open("consult.submitted", 2, keyring.seal(event, event_id, keyring.new_key(1, event.patient_id)),
                          event_id, None)
    assert (opened.patient, opened.chief_complaint, opened.medical_history, opened.answers) == (ERASED,) * 4
    assert (opened.consultation_id, opened.submitted_at) == (event.consultation_id, event.submitted_at)


def test_events_without_personal_fields_are_written_as_they_are(keyring):
    decided = ConsultDecided(consultation_id=uuid.uuid4(), decision="approved", reason="ok", clinician_id="c",
                             decided_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert b"sealed" not in keyring.seal(decided, uuid.uuid4(), keyring.new_key(1, uuid.uuid4()))


def test_a_data_key_unwraps_only_for_its_key_id_and_with_a_configured_kek(keyring):
    key = keyring.new_key(1, uuid.uuid4())
    assert len(keyring.keks.unwrap(key.key_id, key.wrapped, key.kek_id)) == 32
    with pytest.raises(Undecryptable):
        keyring.keks.unwrap(uuid.uuid4(), key.wrapped, key.kek_id)  # the wrapped key moved to another row
    with pytest.raises(KeyEncryptionKeyError, match="not configured"):
        Keyring(KeyEncryptionKeys([os.urandom(32)])).keks.unwrap(key.key_id, key.wrapped, key.kek_id)


def test_rotation_wraps_with_the_first_kek_and_unwraps_with_any():
    old, new = os.urandom(32), os.urandom(32)
    key = Keyring(KeyEncryptionKeys([old])).new_key(1, uuid.uuid4())
    both = KeyEncryptionKeys([new, old])
    raw = both.unwrap(key.key_id, key.wrapped, key.kek_id)
    rewrapped, wrapped_by = both.wrap(key.key_id, raw)
    assert wrapped_by == both.current_id != key.kek_id
    assert KeyEncryptionKeys([new]).unwrap(key.key_id, rewrapped, wrapped_by) == raw


@pytest.mark.parametrize(("env", "message"), [
    ({}, "no key-encryption key is configured"),
    ({"INTAKE_KEK": "not base64!"}, "not base64"),
    ({"INTAKE_KEK": base64.b64encode(b"short").decode()}, "is 5 bytes, not 32"),
    ({"INTAKE_KEK_FILE": "/nonexistent/kek"}, "cannot be read"),
])
def test_a_missing_or_malformed_kek_is_refused_with_what_to_do(env, message):
    with pytest.raises(SettingsError, match=message) as refused:
        load_keks(Settings.from_env(env))
    assert "generate-kek" in str(refused.value) or "cannot be read" in str(refused.value)


def test_a_kek_file_holds_the_current_key_first_then_older_ones(tmp_path):
    new, old = os.urandom(32), os.urandom(32)
    path = tmp_path / "kek"
    path.write_text(f"# rotated 2026-12-02\n{base64.b64encode(new).decode()}\n\n{base64.b64encode(old).decode()}\n")
    keks = load_keks(Settings.from_env({"INTAKE_KEK_FILE": str(path)}))
    assert keks.current_id == KeyEncryptionKeys([new]).current_id and len(keks.ids) == 2
