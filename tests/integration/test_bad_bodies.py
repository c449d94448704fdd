"""Bad request bodies to POST /v1/businesses/{slug}/consult-submissions, one table row per way
to get the body wrong: malformed JSON (400), JSON that breaks the schema (422 naming the field),
too large (413). The request around each body is valid: a good key and idempotency key.

Every row must get the exact 4xx of the API contract as problem+json, never echo patient data,
and write nothing (tests/support/bad_requests.py checks each answer).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator

import pytest

from service.devstack import EmbeddedPostgres, EmbeddedRedis
from tests.support.bad_requests import (
    VALID,
    BadInputApi,
    Case,
    assert_rejected,
    bad_input_api,
    changed,
    dropped,
    encoded,
    invalid,
    rows_written,
    send,
)
from tests.support.payloads import submission

TODAY = dt.date.today()
TOO_OLD = TODAY.replace(year=TODAY.year - 131, day=min(TODAY.day, 28))
PADDING = "history-padding-" + "h" * 70 * 1024  # 70 KiB: over the 64 KiB body limit
TOO_MANY_ANSWERS = [{"question_id": f"q{i}", "answer": "yes"} for i in range(101)]

CASES: list[Case] = [
    # Malformed JSON: 400.
    Case("json-truncated", 400, "malformed-json", VALID[: len(VALID) // 2]),
    Case("json-trailing-garbage", 400, "malformed-json", VALID + b" garbage"),
    Case("json-two-documents", 400, "malformed-json", VALID + VALID),
    Case("json-empty-body", 400, "malformed-json", b""),
    Case("json-whitespace-body", 400, "malformed-json", b"  \n "),
    Case("json-trailing-comma", 400, "malformed-json", b'{"customer_id": "cus_1",}'),
    Case("json-single-quotes", 400, "malformed-json", repr(submission()).encode()),
    Case("json-latin1-encoded", 400, "malformed-json",
         json.dumps(changed("patient.first_name", "Zo\u00e9-Latin1"), ensure_ascii=False).encode("latin-1"),
         leak="Latin1"),
    Case("json-invalid-utf8-in-a-value", 400, "malformed-json", VALID.replace(b'"Ada"', b'"Ad\xff\xfe"')),
    Case("json-invalid-utf8-in-a-key", 400, "malformed-json", VALID.replace(b'"customer_id"', b'"cust\xffomer_id"')),
    Case("json-overlong-utf8", 400, "malformed-json", VALID.replace(b'"Ada"', b'"\xc0\xafAda"')),
    Case("json-utf16-encoded", 400, "malformed-json", json.dumps(submission()).encode("utf-16")),
    # JSON that is not an object: 422 on the body itself.
    Case("json-array", 422, "validation-failed", b"[]", field="body"),
    Case("json-string", 422, "validation-failed", b'"hello"', field="body"),
    Case("json-null", 422, "validation-failed", b"null", field="body"),
    Case("json-number", 422, "validation-failed", b"42", field="body"),
    # Wrong types.
    invalid("type-number-for-string-id", "customer_id", 123),
    invalid("type-string-for-patient-object", "patient", "Ada Lovelace, ada@example.com"),
    invalid("type-object-for-answers-array", "answers", {"question_id": "q1", "answer": "yes"}),
    invalid("type-null-for-required-chief-complaint", "chief_complaint", None),
    invalid("type-null-for-required-patient-email", "patient.email", None),
    invalid("type-bool-for-answer", "answers[0].answer", True),
    invalid("type-array-for-first-name", "patient.first_name", ["Ada"]),
    invalid("type-number-for-date-of-birth", "patient.date_of_birth", 19901210),
    invalid("type-number-for-phone", "patient.phone", 15555550100),
    # Missing required fields.
    Case("missing-customer-id", 422, "validation-failed", encoded(dropped("customer_id")), field="customer_id"),
    Case("missing-patient", 422, "validation-failed", encoded(dropped("patient")), field="patient"),
    Case("missing-chief-complaint", 422, "validation-failed", encoded(dropped("chief_complaint")),
         field="chief_complaint"),
    Case("missing-patient-email", 422, "validation-failed", encoded(dropped("patient.email")),
         field="patient.email"),
    Case("missing-patient-date-of-birth", 422, "validation-failed", encoded(dropped("patient.date_of_birth")),
         field="patient.date_of_birth"),
    Case("missing-answer-question-id", 422, "validation-failed", encoded(dropped("answers[0].question_id")),
         field="answers[0].question_id"),
    # Unknown fields are rejected, at every level.
    # The problem names the object holding the unknown field, never the client's name for it.
    invalid("unknown-top-level-field", "is_admin", "true-please", field="body", leak="is_admin"),
    invalid("unknown-patient-field", "patient.ssn", "078-05-1120", field="patient"),
    invalid("unknown-answer-field", "answers[0].note", "private note about the patient", field="answers[0]"),
    invalid("unknown-field-named-with-patient-data", "patient.Zelda Quixotic DOB 1981-03-04", "x",
            field="patient", leak="Zelda Quixotic"),
    # Over the length limits.
    invalid("long-first-name-101", "patient.first_name", "Ada" + "z" * 98),
    invalid("long-last-name-101", "patient.last_name", "Lovelace" + "z" * 93),
    invalid("long-customer-id-129", "customer_id", "cus_" + "1" * 125, leak=False),
    invalid("long-product-id-129", "product_id", "prod_" + "2" * 124, leak=False),
    invalid("long-question-id-129", "answers[0].question_id", "q_" + "3" * 127, leak=False),
    invalid("long-chief-complaint-2001", "chief_complaint", "cough " + "c" * 1995),
    invalid("long-medical-history-10001", "medical_history", "asthma " + "m" * 9994),
    invalid("too-many-answers-101", "answers", TOO_MANY_ANSWERS),
    # Empty and whitespace-only where a value is required.
    invalid("empty-customer-id", "customer_id", ""),
    invalid("empty-product-id", "product_id", ""),
    invalid("empty-first-name", "patient.first_name", ""),
    invalid("empty-email", "patient.email", ""),
    invalid("empty-chief-complaint", "chief_complaint", ""),
    invalid("empty-question-id", "answers[0].question_id", ""),
    invalid("whitespace-first-name", "patient.first_name", "   "),
    invalid("whitespace-last-name", "patient.last_name", "\t \n"),
    invalid("whitespace-chief-complaint", "chief_complaint", "    "),
    # NUL characters: valid JSON (\u0000) that PostgreSQL cannot store as text.
    invalid("nul-in-first-name", "patient.first_name", "Nul\x00first-zz", leak="first-zz"),
    invalid("nul-in-chief-complaint", "chief_complaint", "Nul\x00complaint-zz", leak="complaint-zz"),
    invalid("nul-in-medical-history", "medical_history", "Nul\x00history-zz", leak="history-zz"),
    invalid("nul-in-answer", "answers[0].answer", "Nul\x00answer-zz", leak="answer-zz"),
    # Dates of birth.
    invalid("date-february-30", "patient.date_of_birth", "2023-02-30"),
    invalid("date-not-a-date", "patient.date_of_birth", "not-a-date-of-birth"),
    invalid("date-in-the-future", "patient.date_of_birth", (TODAY + dt.timedelta(days=400)).isoformat()),
    invalid("date-today", "patient.date_of_birth", TODAY.isoformat()),
    invalid("date-131-years-ago", "patient.date_of_birth", TOO_OLD.isoformat()),
    invalid("date-datetime-string", "patient.date_of_birth", "1990-12-10T08:30:00Z"),
    invalid("date-us-format", "patient.date_of_birth", "12/10/1990"),
    # Emails.
    invalid("email-without-at", "patient.email", "ada.lovelace.example.com"),
    invalid("email-without-domain-dot", "patient.email", "ada.lovelace@examplecom"),
    invalid("email-with-space", "patient.email", "ada lovelace@example.com"),
    invalid("email-with-two-ats", "patient.email", "ada@lovelace@example.com"),
    invalid("email-trailing-dot", "patient.email", "ada.lovelace@example."),
    # Phones must be E.164.
    invalid("phone-without-plus", "patient.phone", "15555550199"),
    invalid("phone-with-spaces", "patient.phone", "+1 555 555 0199"),
    invalid("phone-with-dashes", "patient.phone", "555-555-0199"),
    invalid("phone-leading-zero-country", "patient.phone", "+05555550199"),
    invalid("phone-too-long", "patient.phone", "+1555555019912345"),
    # Over the body limit: 413.
    Case("body-over-64-kib", 413, "payload-too-large", encoded(changed("medical_history", PADDING)),
         leak="history-padding-"),
    Case("body-over-64-kib-chunked", 413, "payload-too-large", encoded(changed("medical_history", PADDING)),
         leak="history-padding-", chunked=True),
]

# Filled by each case, checked once the whole table has run.
_ANSWERED: dict[str, int] = {}


@pytest.fixture(scope="module")
async def api(postgres: EmbeddedPostgres, template_database: str,
              redis_server: EmbeddedRedis) -> AsyncIterator[BadInputApi]:
    """The table's own server and database (none of its cases may write)."""
    async with bad_input_api(postgres, template_database, redis_server, "bad_bodies") as served:
        yield served


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_a_bad_body_is_rejected_with_a_problem_and_writes_nothing(case: Case, api: BadInputApi):
    response, before, after = await send(api, case)
    _ANSWERED[case.id] = response.status_code
    assert_rejected(case, response, before, after)


async def test_no_row_of_the_body_table_got_a_server_error(api: BadInputApi):
    if len(_ANSWERED) != len(CASES):
        pytest.skip("only meaningful after the whole table has run")
    assert {case_id: status for case_id, status in _ANSWERED.items() if status >= 500} == {}
    assert await rows_written(api.db) == (0, 0, 0)


def test_the_body_table_covers_every_status_the_contract_names_for_bad_bodies():
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)
    assert {case.status for case in CASES} == {400, 413, 422}
