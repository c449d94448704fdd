"""Standard Webhooks signatures against the specification's published test vector, and the
refusals a receiver relies on."""

from __future__ import annotations

import pytest

from projections import signatures

# The specification's test vector (standard-webhooks, and every library that implements it).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
KEY = signatures.secret_key(SECRET)


def test_signing_reproduces_the_specification_vector():
    assert signatures.sign(KEY, MSG_ID, TIMESTAMP, BODY) == SIGNATURE


def test_the_vector_verifies_at_its_own_time_and_within_five_minutes():
    assert signatures.verify([KEY], MSG_ID, str(TIMESTAMP), SIGNATURE, BODY, now=TIMESTAMP) == TIMESTAMP
    assert signatures.verify([KEY], MSG_ID, str(TIMESTAMP), SIGNATURE, BODY, now=TIMESTAMP + 300) == TIMESTAMP


@pytest.mark.parametrize("now", [TIMESTAMP + 301, TIMESTAMP - 301])
def test_a_timestamp_beyond_five_minutes_either_way_is_refused(now):
    with pytest.raises(signatures.TimestampOutOfRange):
        signatures.verify([KEY], MSG_ID, str(TIMESTAMP), SIGNATURE, BODY, now=now)


@pytest.mark.parametrize("body, msg_id", [(b'{"test": 2432232315}', MSG_ID), (BODY, "msg_other")])
def test_an_altered_body_or_id_is_refused(body, msg_id):
    with pytest.raises(signatures.SignatureRejected):
        signatures.verify([KEY], msg_id, str(TIMESTAMP), SIGNATURE, body, now=TIMESTAMP)


def test_any_of_several_keys_and_signatures_verifies_which_is_how_rotation_works():
    other = signatures.secret_key(signatures.new_secret())
    header = signatures.signature_header([other, KEY], MSG_ID, TIMESTAMP, BODY)
    assert header.split(" ")[1] == SIGNATURE
    assert signatures.verify([KEY], MSG_ID, str(TIMESTAMP), header, BODY, now=TIMESTAMP) == TIMESTAMP
    assert signatures.verify([other, KEY], MSG_ID, str(TIMESTAMP), SIGNATURE, BODY, now=TIMESTAMP) == TIMESTAMP
    with pytest.raises(signatures.SignatureRejected):
        signatures.verify([other], MSG_ID, str(TIMESTAMP), SIGNATURE, BODY, now=TIMESTAMP)


@pytest.mark.parametrize("msg_id, timestamp, signature", [
    (None, str(TIMESTAMP), SIGNATURE), (MSG_ID, None, SIGNATURE), (MSG_ID, str(TIMESTAMP), None),
    (MSG_ID, "16142653３0", SIGNATURE), (MSG_ID, "-1614265330", SIGNATURE), (MSG_ID, "9" * 5000, SIGNATURE),
])
def test_missing_or_malformed_headers_are_their_own_error(msg_id, timestamp, signature):
    with pytest.raises(signatures.MalformedSignatureHeaders):
        signatures.verify([KEY], msg_id, timestamp, signature, BODY, now=TIMESTAMP)


def test_a_new_secret_round_trips_and_a_garbled_one_is_refused():
    secret = signatures.new_secret()
    assert secret.startswith("whsec_") and len(signatures.secret_key(secret)) == signatures.SECRET_BYTES
    with pytest.raises(ValueError):
        signatures.secret_key("whsec_not base64!")
