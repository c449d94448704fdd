"""What releases before `consult.submitted` v2 wrote, byte for byte, to test that this one still reads it.

Captured from the code as it was before consent (commit b938296): its encoder's payload for a
submission, and the canonical body its idempotency fingerprint covered for `VALID_SUBMISSION`.
"""

from __future__ import annotations

import hashlib
import uuid

# events/codec.py: encode_payload(ConsultSubmitted(...)) of that release; ids and the customer filled in.
V1_SUBMITTED_PAYLOAD = (
    '{"type":"consult.submitted.v1","submission_id":"%(submission_id)s","consultation_id":"%(consultation_id)s",'
    '"patient_id":"%(patient_id)s","customer_id":"%(customer_id)s","product_id":"prod_abc",'
    '"patient":{"first_name":"Ada","last_name":"Lovelace","email":"ada@example.com",'
    '"date_of_birth":"1990-12-10","phone":"+15555550100"},"chief_complaint":"Persistent cough for two weeks",'
    '"medical_history":"None","answers":[{"question_id":"q1","answer":"yes"}],"submitted_at":"2026-01-05T09:30:00Z"}'
)

# service/http/writes.py of that release: the body as it fingerprinted it (msgspec's encoding of the
# decoded SubmissionIn, which for this body is also the JSON a client sends).
V1_SUBMISSION_BODY = (
    b'{"customer_id":"cus_123","product_id":"prod_abc","patient":{"first_name":"Ada","last_name":"Lovelace",'
    b'"email":"ada@example.com","date_of_birth":"1990-12-10","phone":"+15555550100"},'
    b'"chief_complaint":"Persistent cough for two weeks","medical_history":"None",'
    b'"answers":[{"question_id":"q1","answer":"yes"}]}'
)
# That release's sha256 of it for business 1, as computed then.
V1_FINGERPRINT_BUSINESS_1 = "086d54bee692f558282aca4fe185b5b83690f76c7948137f0b52c823ef9bc47d"


def v1_payload(*, submission_id: uuid.UUID, consultation_id: uuid.UUID, patient_id: uuid.UUID,
               customer_id: str = "cus_123") -> str:
    """A version-1 `consult.submitted` payload as the previous release wrote it."""
    return V1_SUBMITTED_PAYLOAD % dict(submission_id=submission_id, consultation_id=consultation_id,
                                       patient_id=patient_id, customer_id=customer_id)


def v1_fingerprint(business_id: int) -> bytes:
    """The fingerprint the previous release stored with V1_SUBMISSION_BODY's key (writes.py, the old way)."""
    return hashlib.sha256(b"submit:%d" % business_id + b"\x00" + V1_SUBMISSION_BODY).digest()
