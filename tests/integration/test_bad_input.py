"""Bad input to POST /v1/businesses/{slug}/consult-submissions, one table row per way to get it wrong.

Every row must get the exact 4xx of the API contract as a problem+json document that
names the failing field (for 422), never echoes patient data, and writes nothing:
a rejected request leaves no event and no outbox row.

One server and one database serve the whole table: no case here may write, so the
cases cannot disturb each other, and each still checks that it wrote nothing itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from service.devstack import EmbeddedPostgres, EmbeddedRedis
from service.settings import Settings
from tests.support.databases import cloned_database
from tests.support.payloads import submission
from tests.support.servers import running_api
from tests.support.tenants import TenantKeys, make_tenant

SLUG = "acme"
URL = f"/v1/businesses/{SLUG}/consult-submissions"
PROBLEM_TYPE = re.compile(r"^https://intake\.dev/problems/[a-z0-9]+(?:-[a-z0-9]+)*$")
# Texts that would mean internals leaked into an error body.
INTERNALS = ("Traceback", "SELECT ", "INSERT ", "asyncpg", "msgspec")


@dataclasses.dataclass(frozen=True)
class Keys:
    """The API keys a case can present."""

    acme: TenantKeys
    globex: TenantKeys


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad request and the answer the contract requires."""

    id: str
    status: int
    problem: str  # the slug at the end of the problem type URI
    body: bytes = dataclasses.field(repr=False)
    field: str | None = None  # the dotted path the 422 `errors` must name
    leak: str | None = None  # patient data sent in the request that the answer must not contain
    content_type: str | None = "application/json"
    chunked: bool = False  # sent without Content-Length, so the limit must hold while streaming
    authorization: Callable[[Keys], str | None] = dataclasses.field(
        default=lambda keys: f"Bearer {keys.acme.key}", repr=False)
    idempotency_key: Callable[[], str | bytes | None] = dataclasses.field(
        default=lambda: uuid.uuid4().hex, repr=False)


# --- building bodies --------------------------------------------------------------------

_STEP = re.compile(r"[^.\[\]]+|\[\d+\]")


def _walk(body: Any, path: str) -> tuple[Any, str | int]:
    steps: list[str | int] = [int(s[1:-1]) if s.startswith("[") else s for s in _STEP.findall(path)]
    for step in steps[:-1]:
        body = body[step]
    return body, steps[-1]


def changed(path: str, value: Any) -> dict[str, Any]:
    """A valid submission with the field at a dotted path (`answers[0].answer`) set to `value`."""
    body = submission()
    parent, last = _walk(body, path)
    parent[last] = value
    return body


def dropped(path: str) -> dict[str, Any]:
    """A valid submission without the field at a dotted path."""
    body = submission()
    parent, last = _walk(body, path)
    del parent[last]
    return body


def encoded(value: Any) -> bytes:
    """JSON as a client would send it."""
    return json.dumps(value, ensure_ascii=False).encode()


def invalid(case_id: str, path: str, value: Any, *, field: str | None = None, leak: bool | str = True) -> Case:
    """A 422 for one field set to a bad value; string values count as patient data that must not leak."""
    if leak is True:
        leak = value if isinstance(value, str) and value.strip() else False
    return Case(case_id, 422, "validation-failed", encoded(changed(path, value)), field=field or path,
                leak=leak or None)


def unchanged_body(case_id: str, status: int, problem: str, **fields: Any) -> Case:
    """A valid body whose request is wrong elsewhere (headers)."""
    return Case(case_id, status, problem, encoded(submission()), **fields)


VALID = encoded(submission())
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
    invalid("unknown-top-level-field", "is_admin", "true-please", leak=False),
    invalid("unknown-patient-field", "patient.ssn", "078-05-1120"),
    invalid("unknown-answer-field", "answers[0].note", "private note about the patient"),
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
    # Not JSON: 415.
    unchanged_body("content-type-text-plain", 415, "unsupported-media-type", content_type="text/plain"),
    unchanged_body("content-type-missing", 415, "unsupported-media-type", content_type=None),
    Case("content-type-form-encoded", 415, "unsupported-media-type",
         b"customer_id=cus_123&patient.email=form%40example.com", content_type="application/x-www-form-urlencoded"),
    unchanged_body("content-type-xml", 415, "unsupported-media-type", content_type="application/xml"),
    # Over the body limit: 413.
    Case("body-over-64-kib", 413, "payload-too-large", encoded(changed("medical_history", PADDING)),
         leak="history-padding-"),
    Case("body-over-64-kib-chunked", 413, "payload-too-large", encoded(changed("medical_history", PADDING)),
         leak="history-padding-", chunked=True),
    # Authentication: 401 before anything else is looked at.
    unchanged_body("auth-missing", 401, "unauthenticated", authorization=lambda keys: None),
    unchanged_body("auth-basic-scheme", 401, "unauthenticated",
                   authorization=lambda keys: "Basic YWNtZTpzZWNyZXQ="),
    unchanged_body("auth-key-without-scheme", 401, "unauthenticated", authorization=lambda keys: keys.acme.key),
    unchanged_body("auth-bearer-without-key", 401, "unauthenticated", authorization=lambda keys: "Bearer"),
    unchanged_body("auth-unknown-key", 401, "unauthenticated",
                   authorization=lambda keys: "Bearer ik_" + "u" * 43),
    unchanged_body("auth-not-a-key", 401, "unauthenticated", authorization=lambda keys: "Bearer not-a-real-key"),
    Case("auth-missing-with-malformed-body", 401, "unauthenticated", b"{not json", authorization=lambda keys: None),
    # Authorization: 403.
    unchanged_body("auth-key-of-another-business", 403, "forbidden",
                   authorization=lambda keys: f"Bearer {keys.globex.key}"),
    unchanged_body("auth-read-only-key", 403, "forbidden",
                   authorization=lambda keys: f"Bearer {keys.acme.read_only_key}"),
    # Idempotency-Key: 400.
    unchanged_body("idempotency-key-missing", 400, "invalid-idempotency-key", idempotency_key=lambda: None),
    unchanged_body("idempotency-key-empty", 400, "invalid-idempotency-key", idempotency_key=lambda: ""),
    unchanged_body("idempotency-key-256-chars", 400, "invalid-idempotency-key", idempotency_key=lambda: "k" * 256),
    unchanged_body("idempotency-key-with-space", 400, "invalid-idempotency-key",
                   idempotency_key=lambda: "key with space"),
    unchanged_body("idempotency-key-with-tab", 400, "invalid-idempotency-key", idempotency_key=lambda: "key\twith-tab"),
    unchanged_body("idempotency-key-non-ascii", 400, "invalid-idempotency-key",
                   idempotency_key=lambda: "cl\u00e9".encode()),
]

# Filled by each case, checked once the whole table has run.
_ANSWERED: dict[str, int] = {}


# --- one server and one database for the module ------------------------------------------

@pytest.fixture(scope="module")
async def module_database_url(postgres: EmbeddedPostgres, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database shared by the table's cases (none of which may write)."""
    name = f"test_bad_input_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    async with cloned_database(postgres, template_database, name) as url:
        yield url


@pytest.fixture(scope="module")
async def module_db(module_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection for setup and for counting what a case wrote."""
    conn = await asyncpg.connect(module_database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def keys(module_db: asyncpg.Connection) -> Keys:
    """Businesses 'acme' (the target) and 'globex', with their keys."""
    return Keys(acme=await make_tenant(module_db, SLUG), globex=await make_tenant(module_db, "globex"))


@pytest.fixture(scope="module")
async def client(module_database_url: str, redis_server: EmbeddedRedis, keys: Keys) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the real API, served in-process against the module's database."""
    settings = dataclasses.replace(Settings.from_env({}), database_url=module_database_url,
                                   redis_url=redis_server.url(), log_format="json")
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        yield http


async def rows_written(db: asyncpg.Connection) -> tuple[int, int]:
    """How many rows the events and outbox tables hold."""
    row = await db.fetchrow("SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM outbox) AS outbox")
    return row["events"], row["outbox"]


async def in_chunks(body: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    """The body as a stream, which httpx sends with chunked transfer encoding."""
    for start in range(0, len(body), size):
        yield body[start:start + size]


def request_headers(case: Case, keys: Keys) -> dict[str, str | bytes]:
    """The case's headers; an absent value leaves the header out."""
    wanted = {"Authorization": case.authorization(keys), "Idempotency-Key": case.idempotency_key(),
              "Content-Type": case.content_type}
    return {name: value for name, value in wanted.items() if value is not None}


# --- the table ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_bad_input_is_rejected_with_a_problem_and_writes_nothing(case: Case, client: httpx.AsyncClient,
                                                                        keys: Keys, module_db: asyncpg.Connection):
    before = await rows_written(module_db)
    content = in_chunks(case.body) if case.chunked else case.body
    response = await client.post(URL, content=content, headers=request_headers(case, keys))
    after = await rows_written(module_db)
    _ANSWERED[case.id] = response.status_code

    # Compared with `before`, not (0, 0): a leak here must not fail the cases that follow.
    assert after == before, f"the rejected request wrote rows: (events, outbox) {before} -> {after}"
    assert response.status_code < 500, f"server error: {response.status_code} {response.text[:500]}"
    assert response.status_code == case.status, response.text[:500]
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers.get("x-request-id")
    problem = response.json()
    assert PROBLEM_TYPE.match(problem.get("type", "")), problem
    assert problem["type"] == f"https://intake.dev/problems/{case.problem}"
    assert isinstance(problem.get("title"), str) and problem["title"]
    assert problem["status"] == response.status_code
    if case.status == 401:
        assert response.headers.get("www-authenticate", "").lower().startswith("bearer")
    if case.status == 422:
        errors = problem.get("errors")
        assert isinstance(errors, list) and errors, problem
        assert all(isinstance(e.get("message"), str) and e["message"] for e in errors), errors
        assert case.field in [e.get("field") for e in errors], errors
    answered = response.text + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    if case.leak is not None:
        assert case.leak not in answered, "the answer echoes patient data"
    assert not [word for word in INTERNALS if word in response.text], response.text[:500]


async def test_no_row_of_the_table_got_a_server_error(module_db: asyncpg.Connection):
    if len(_ANSWERED) != len(CASES):
        pytest.skip("only meaningful after the whole table has run")
    assert {case_id: status for case_id, status in _ANSWERED.items() if status >= 500} == {}
    assert await rows_written(module_db) == (0, 0)


def test_the_table_covers_every_status_the_contract_names_for_bad_input():
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)
    assert {case.status for case in CASES} == {400, 401, 403, 413, 415, 422}
