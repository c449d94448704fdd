"""Hostile input across every endpoint: each row is a request a careless or malicious client sends,
and the exact 4xx problem+json it must get — never a 5xx, never an echo of what it sent (not in the
body, not in `instance`, not in a header), never a write.

Findings of the hardening review each have rows here: ids with a trailing newline (5), NUL and
non-ASCII digits in query values and paths (6), values and unknown field names echoed in errors,
raw paths in `instance` (7), foreign charsets, `+json` media types and invisible names (9).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from service import admin
from service.devstack import EmbeddedPostgres, EmbeddedRedis
from tests.support.bad_requests import INTERNALS, PROBLEM_TYPE, BadInputApi, bad_input_api, rows_written
from tests.support.payloads import submission

PHI = "Zelda Quixotic DOB 1981-03-04"  # what must never come back
ACME = "/v1/businesses/acme"
SUBMIT = f"{ACME}/consult-submissions"
CONSULTATION = "11111111-2222-4333-8444-555555555555"  # replaced by the fixture's real consultation
DECIDE = f"{ACME}/consultations/{CONSULTATION}/decision"
HISTORY = f"{ACME}/consultations/{CONSULTATION}/history"
FORGET = f"{ACME}/patients/forget"
AS_OF = f"{ACME}/consultations/{CONSULTATION}?as_of="
TEMPLATES = {  # every `instance` must be one of these (or absent): never the path as the client sent it
    "/v1/businesses/{slug}/consult-submissions", "/v1/businesses/{slug}/consultations/{consultation_id}/decision",
    "/v1/businesses/{slug}/consultations/{consultation_id}", "/v1/businesses/{slug}/consultations",
    "/v1/businesses/{slug}/patients/{patient_id}", "/v1/businesses/{slug}/patients",
    "/v1/businesses/{slug}/approvals", "/v1/events", "/v1/businesses/{slug}/consultations/{consultation_id}/history",
    "/v1/businesses/{slug}/patients/forget",
}


@dataclasses.dataclass(frozen=True)
class Hostile:
    """One hostile request and the answer it must get."""

    id: str
    method: str
    path: str
    status: int
    problem: str
    body: Any = None  # a dict/list is sent as JSON; bytes as they are
    key: str | None = "acme"  # acme | read | globex | admin | None
    content_type: str = "application/json"
    field: str | None = None  # for 422: the field the problem must name
    leak: str | None = None  # sent text the answer must not contain


def submission_with(path: str, value: Any) -> dict[str, Any]:
    body = submission()
    *parents, last = path.split(".")
    target = body
    for step in parents:
        target = target[int(step)] if step.isdigit() else target[step]
    target[int(last) if last.isdigit() else last] = value
    return body


def bad_field(case_id: str, path: str, value: Any, *, field: str | None = None, leak: str | None = None) -> Hostile:
    if leak is None and isinstance(value, str) and len(value.strip()) > 3:
        leak = value
    return Hostile(case_id, "POST", SUBMIT, 422, "validation-failed", submission_with(path, value),
                   field=field or path.replace(".0.", "[0]."), leak=leak)


def bad_consent(case_id: str, field: str, *, leak: str | None = None, **consent: Any) -> Hostile:
    """A submission whose consent (version 2 of consult.submitted) is wrong in `field`."""
    return bad_field(case_id, "consent", {"document_version": "tc-2026-01", "accepted_at": "2026-01-05T09:30:00Z",
                                          **consent}, field=field, leak=leak)


def decision(**overrides: Any) -> dict[str, Any]:
    return {"decision": "approved", "reason": "Meets the criteria", "clinician_id": "clin_7", **overrides}


def get(case_id: str, path: str, status: int = 400, problem: str = "invalid-parameter", **kw: Any) -> Hostile:
    return Hostile(case_id, "GET", path, status, problem, **kw)


CASES = [
    # Finding 5: a trailing newline made "cus_x\n" a second customer beside "cus_x".
    bad_field("newline-after-customer-id", "customer_id", "cus_x\n"),
    bad_field("cr-after-customer-id", "customer_id", "cus_x\r"),
    bad_field("newline-after-product-id", "product_id", "prod_abc\n"),
    bad_field("newline-after-question-id", "answers.0.question_id", "q1\n"),
    bad_field("newline-after-phone", "patient.phone", "+15555550100\n"),
    bad_field("newline-after-email", "patient.email", "ada@example.com\n"),
    bad_field("control-in-email", "patient.email", "ada\x01@example.com"),
    Hostile("newline-after-clinician-id", "POST", DECIDE, 422, "validation-failed",
            decision(clinician_id="clin_7\n"), field="clinician_id"),
    Hostile("space-in-clinician-id", "POST", DECIDE, 422, "validation-failed",
            decision(clinician_id="clin 7"), field="clinician_id"),
    # Finding 9: names and complaints that render as nothing, or carry control characters.
    bad_field("zero-width-space-first-name", "patient.first_name", "\u200b"),
    bad_field("invisible-only-first-name", "patient.first_name", "\u200b\u200c\ufeff\u2060"),
    bad_field("ideographic-space-last-name", "patient.last_name", "\u3000\u3000"),
    bad_field("newline-in-first-name", "patient.first_name", "Ada\nLovelace"),
    bad_field("tab-in-last-name", "patient.last_name", "Love\tlace"),
    bad_field("line-separator-in-first-name", "patient.first_name", "Ada\u2028Lovelace"),
    bad_field("zero-width-chief-complaint", "chief_complaint", "\u200b\n\u200d"),
    bad_field("escape-in-chief-complaint", "chief_complaint", "cough \x1b[31m red"),
    bad_field("del-in-medical-history", "medical_history", "asthma\x7f since 2001"),
    bad_field("c1-control-in-answer", "answers.0.answer", "yes\x85no"),
    Hostile("zero-width-reason", "POST", DECIDE, 422, "validation-failed", decision(reason="\u200b"), field="reason"),
    Hostile("bell-in-reason", "POST", DECIDE, 422, "validation-failed", decision(reason="ok\x07"), field="reason"),
    Hostile("latin1-charset-submission", "POST", SUBMIT, 415, "unsupported-media-type", submission(),
            content_type="application/json; charset=latin-1"),
    Hostile("utf16-charset-submission", "POST", SUBMIT, 415, "unsupported-media-type", submission(),
            content_type="application/json; charset=utf-16"),
    Hostile("evil-plus-json-submission", "POST", SUBMIT, 415, "unsupported-media-type", submission(),
            content_type="application/evil+json"),
    Hostile("extra-parameter-submission", "POST", SUBMIT, 415, "unsupported-media-type", submission(),
            content_type="application/json; boundary=x"),
    Hostile("latin1-charset-decision", "POST", DECIDE, 415, "unsupported-media-type", decision(),
            content_type="application/json; charset=iso-8859-1"),
    Hostile("evil-plus-json-decision", "POST", DECIDE, 415, "unsupported-media-type", decision(),
            content_type="application/problem+json"),
    Hostile("text-plain-decision", "POST", DECIDE, 415, "unsupported-media-type", decision(), content_type="text/plain"),
    # Finding 7: nothing the client sent comes back.
    Hostile("phi-as-decision-enum", "POST", DECIDE, 422, "validation-failed", decision(decision=PHI),
            field="decision", leak=PHI),
    Hostile("phi-as-unknown-decision-field", "POST", DECIDE, 422, "validation-failed", {**decision(), PHI: 1},
            field="body", leak=PHI),
    bad_field("phi-as-unknown-patient-field", f"patient.{PHI}", "x", field="patient", leak=PHI),
    Hostile("phi-in-consultation-path", "POST", f"{ACME}/consultations/{PHI}/decision", 404, "not-found",
            decision(), leak="Zelda"),
    get("phi-as-consultation-id", f"{ACME}/consultations/{PHI}", 404, "not-found", leak="Zelda"),
    get("phi-as-patient-id", f"{ACME}/patients/{PHI}", 404, "not-found", leak="Zelda"),
    get("phi-as-status", f"{ACME}/consultations?status={PHI}", leak="Zelda"),
    get("phi-as-cursor", f"{ACME}/consultations?cursor={PHI}", leak="Zelda"),
    get("phi-as-approvals-status", f"{ACME}/approvals?status={PHI}", leak="Zelda"),
    get("phi-as-slug-admin", f"/v1/businesses/{PHI}/consultations", 404, "not-found", key="admin", leak="Zelda"),
    Hostile("phi-in-unknown-route", "GET", f"/v1/{PHI}", 404, "not-found", leak="Zelda"),
    # Finding 6: NUL and non-ASCII digits in query values and paths were 500s.
    get("nul-customer-id", f"{ACME}/consultations?customer_id=%00"),
    get("newline-customer-id", f"{ACME}/consultations?customer_id=cus_x%0A"),
    get("long-customer-id", f"{ACME}/consultations?customer_id={'c' * 129}"),
    get("nul-status", f"{ACME}/approvals?status=%00"),
    get("nul-cursor", f"{ACME}/consultations?cursor=%00"),
    get("superscript-limit", f"{ACME}/consultations?limit=%C2%B2"),
    get("fullwidth-limit", f"{ACME}/patients?limit=%EF%BC%91"),
    get("negative-limit", f"{ACME}/approvals?limit=-1"),
    get("zero-limit", f"{ACME}/patients?limit=0"),
    get("huge-limit", f"{ACME}/consultations?limit={10**30}"),
    get("superscript-min-position", f"{ACME}/consultations?min_position=%C2%B2"),
    get("nul-consultation-id", f"{ACME}/consultations/%00", 404, "not-found"),
    get("nul-patient-id", f"{ACME}/patients/%00", 404, "not-found"),
    get("nul-slug-business-key", "/v1/businesses/%00/patients", 403, "forbidden"),
    get("nul-slug-admin-key", "/v1/businesses/%00/patients", 404, "not-found", key="admin"),
    get("upper-case-slug-admin-key", "/v1/businesses/ACME/approvals", 404, "not-found", key="admin"),
    get("newline-slug-admin-key", "/v1/businesses/acme%0A/approvals", 404, "not-found", key="admin"),
    get("superscript-after", "/v1/events?after=%C2%B2", key="admin"),
    get("fullwidth-after", "/v1/events?after=%EF%BC%91", key="admin"),
    get("nul-after", "/v1/events?after=%00", key="admin"),
    get("negative-after", "/v1/events?after=-5", key="admin"),
    get("bigint-overflow-after", "/v1/events?after=9223372036854775808", key="admin"),
    get("zero-events-limit", "/v1/events?limit=0", key="admin"),
    get("unknown-after", "/v1/events?after=999999", problem="unknown-position", key="admin"),
    # Telehealth consent (consult.submitted v2): a short id, and an instant with its offset, not in the future.
    bad_consent("space-in-consent-document-version", "consent.document_version", document_version="tc 2026"),
    bad_consent("newline-after-consent-document-version", "consent.document_version", document_version="tc-1\n"),
    bad_consent("long-consent-document-version", "consent.document_version", document_version="v" * 33),
    bad_consent("empty-consent-document-version", "consent.document_version", document_version=""),
    bad_consent("dot-first-consent-document-version", "consent.document_version", document_version=".tc"),
    bad_consent("phi-as-consent-document-version", "consent.document_version", document_version=PHI, leak=PHI),
    bad_consent("consent-accepted-at-without-offset", "consent.accepted_at", accepted_at="2026-01-05T09:30:00"),
    bad_consent("consent-accepted-at-date-only", "consent.accepted_at", accepted_at="2026-01-05"),
    bad_consent("phi-as-consent-accepted-at", "consent.accepted_at", accepted_at=PHI, leak=PHI),
    bad_consent("consent-accepted-in-the-future", "consent.accepted_at", accepted_at="2999-01-01T00:00:00Z"),
    bad_consent("consent-accepted-at-null", "consent.accepted_at", accepted_at=None),
    bad_field("consent-without-accepted-at", "consent", {"document_version": "tc-1"}, field="consent.accepted_at"),
    bad_field("consent-as-a-string", "consent", "yes, I agree", field="consent"),
    bad_consent("phi-as-unknown-consent-field", "consent", leak=PHI, **{PHI: 1}),
    # Keys and scopes on the wrong door.
    get("business-key-on-events", "/v1/events", 403, "forbidden"),
    get("read-key-decides", DECIDE, 405, "method-not-allowed", key="read"),
    Hostile("read-key-decides-for-real", "POST", DECIDE, 403, "forbidden", decision(), key="read"),
    Hostile("globex-key-on-acme", "POST", DECIDE, 403, "forbidden", decision(), key="globex"),
    Hostile("no-key-decision", "POST", DECIDE, 401, "unauthenticated", decision(), key=None),
    Hostile("malformed-decision-json", "POST", DECIDE, 400, "malformed-json", b'{"decision": '),
    Hostile("array-decision", "POST", DECIDE, 422, "validation-failed", [], field="body"),
    # The audit reads (issue 10): ids and times are checked before they reach SQL, and the log is
    # for keys with audit:read on their own business only.
    get("phi-as-of", AS_OF + PHI, key="acme", leak="Zelda"),
    get("nul-as-of", AS_OF + "%00", key="acme"),
    get("as-of-before-utc-begins", AS_OF + "0001-01-01T00:00:00%2B14:00", key="acme"),
    get("five-thousand-digit-limit", f"{ACME}/consultations?limit={'1' * 5000}"),
    get("five-thousand-digit-after", f"/v1/events?after={'9' * 5000}", key="admin"),
    get("date-only-as-of", AS_OF + "2026-03-01", key="acme"),
    get("no-offset-as-of", AS_OF + "2026-03-01T14:02:00", key="acme"),
    get("fullwidth-digit-as-of", AS_OF + "%EF%BC%92026-03-01T14:02:00Z", key="acme"),
    get("newline-as-of", AS_OF + "2026-03-01T14:02:00Z%0A", key="acme"),
    get("year-10000-as-of", AS_OF + "+10000-03-01T14:02:00Z", key="acme"),
    get("future-as-of", AS_OF + "9999-12-31T23:59:59Z", key="acme"),
    get("read-key-as-of", AS_OF + "2026-03-01T14:02:00Z", 403, "forbidden", key="read"),
    get("globex-key-as-of", AS_OF + "2026-03-01T14:02:00Z", 403, "forbidden", key="globex"),
    get("read-key-history", HISTORY, 403, "forbidden", key="read"),
    get("globex-key-history", HISTORY, 403, "forbidden", key="globex"),
    get("no-key-history", HISTORY, 401, "unauthenticated", key=None),
    get("phi-as-history-id", f"{ACME}/consultations/{PHI}/history", 404, "not-found", key="acme", leak="Zelda"),
    get("nul-history-id", f"{ACME}/consultations/%00/history", 404, "not-found", key="acme"),
    get("unknown-history-id", f"{ACME}/consultations/{uuid.UUID(int=7)}/history", 404, "not-found", key="acme"),
    Hostile("history-post", "POST", HISTORY, 405, "method-not-allowed", decision(), key="acme"),
    # Erasure (issue 11): admin scope only; the reason is recorded, so it is strict text too.
    Hostile("forget-business-key", "POST", FORGET, 403, "forbidden", {"customer_id": "cus_123", "reason": "asked"}),
    Hostile("forget-no-key", "POST", FORGET, 401, "unauthenticated", {"customer_id": "cus_123", "reason": "x"},
            key=None),
    Hostile("forget-newline-customer", "POST", FORGET, 422, "validation-failed",
            {"customer_id": "cus_123\n", "reason": "asked"}, key="admin", field="customer_id"),
    Hostile("forget-blank-reason", "POST", FORGET, 422, "validation-failed",
            {"customer_id": "cus_123", "reason": "\u200b"}, key="admin", field="reason"),
    Hostile("forget-unknown-field", "POST", FORGET, 422, "validation-failed",
            {"customer_id": "cus_123", "reason": "asked", "first_name": "Zelda"}, key="admin", leak="Zelda"),
    Hostile("forget-unknown-customer", "POST", FORGET, 404, "not-found",
            {"customer_id": "cus_nobody", "reason": "asked"}, key="admin"),
    Hostile("forget-not-json", "POST", FORGET, 400, "malformed-json", b"{customer_id:", key="admin"),
]


@pytest.fixture(scope="module")
async def hostile(postgres: EmbeddedPostgres, template_database: str,
                  redis_server: EmbeddedRedis) -> AsyncIterator[tuple[BadInputApi, dict[str, str]]]:
    """The API with one pending consultation to aim decisions at, and every kind of key."""
    async with bad_input_api(postgres, template_database, redis_server, "hostile") as api:
        response = await api.client.post(SUBMIT, json=submission(), headers={
            "Authorization": f"Bearer {api.keys.acme.key}", "Idempotency-Key": uuid.uuid4().hex})
        assert response.status_code == 202, response.text
        admin_key = await admin.create_key(api.db, business=None, scopes=[], admin=True)
        keys = {"acme": api.keys.acme.key, "read": api.keys.acme.read_only_key, "globex": api.keys.globex.key,
                "admin": admin_key.key}
        yield api, {"consultation": response.json()["consultation_id"], **keys}


def test_the_table_covers_every_finding_and_at_least_sixty_requests():
    assert len(CASES) >= 60
    assert len({case.id for case in CASES}) == len(CASES)
    assert {case.method for case in CASES} == {"GET", "POST"}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_a_hostile_request_gets_its_problem_echoes_nothing_and_writes_nothing(hostile, case: Hostile):
    api, known = hostile
    headers = {"Idempotency-Key": uuid.uuid4().hex, "Content-Type": case.content_type}
    if case.key is not None:
        headers["Authorization"] = f"Bearer {known[case.key]}"
    body = case.body if isinstance(case.body, bytes) or case.body is None else json.dumps(case.body).encode()
    before = await rows_written(api.db)
    response = await api.client.request(case.method, case.path.replace(CONSULTATION, known["consultation"]),
                                        content=body, headers=headers)
    assert await rows_written(api.db) == before
    assert response.status_code == case.status, response.text[:300]
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert PROBLEM_TYPE.match(problem["type"]) and problem["type"].endswith("/" + case.problem), problem
    assert problem.get("instance") in TEMPLATES | {None}, problem
    if case.field is not None:
        assert case.field in [error["field"] for error in problem["errors"]], problem
    answered = response.text + "".join(f"{k}: {v}" for k, v in response.headers.items())
    if case.leak is not None:
        assert case.leak not in answered
    assert not [word for word in INTERNALS if word in response.text]
