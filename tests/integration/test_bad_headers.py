"""Bad requests around a valid body to POST /v1/businesses/{slug}/consult-submissions, one table
row per way to get them wrong: the media type (415), authentication (401, before anything else is
looked at), authorization (403), the Idempotency-Key header (400).

Every row must get the exact 4xx of the API contract as problem+json, never echo patient data,
and write nothing (tests/support/bad_requests.py checks each answer).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from service.devstack import EmbeddedPostgres, EmbeddedRedis
from tests.support.bad_requests import (
    BadInputApi,
    Case,
    assert_rejected,
    bad_input_api,
    rows_written,
    send,
    unchanged_body,
)

CASES: list[Case] = [
    # Not JSON: 415.
    unchanged_body("content-type-text-plain", 415, "unsupported-media-type", content_type="text/plain"),
    unchanged_body("content-type-missing", 415, "unsupported-media-type", content_type=None),
    Case("content-type-form-encoded", 415, "unsupported-media-type",
         b"customer_id=cus_123&patient.email=form%40example.com", content_type="application/x-www-form-urlencoded"),
    unchanged_body("content-type-xml", 415, "unsupported-media-type", content_type="application/xml"),
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
                   idempotency_key=lambda: "cl\u00e9".encode()),]

# Filled by each case, checked once the whole table has run.
_ANSWERED: dict[str, int] = {}


@pytest.fixture(scope="module")
async def api(postgres: EmbeddedPostgres, template_database: str,
              redis_server: EmbeddedRedis) -> AsyncIterator[BadInputApi]:
    """The table's own server and database (none of its cases may write)."""
    async with bad_input_api(postgres, template_database, redis_server, "bad_headers") as served:
        yield served


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_a_bad_header_is_rejected_with_a_problem_and_writes_nothing(case: Case, api: BadInputApi):
    response, before, after = await send(api, case)
    _ANSWERED[case.id] = response.status_code
    assert_rejected(case, response, before, after)


async def test_no_row_of_the_header_table_got_a_server_error(api: BadInputApi):
    if len(_ANSWERED) != len(CASES):
        pytest.skip("only meaningful after the whole table has run")
    assert {case_id: status for case_id, status in _ANSWERED.items() if status >= 500} == {}
    assert await rows_written(api.db) == (0, 0, 0)


def test_the_header_table_covers_every_status_the_contract_names_for_bad_headers():
    assert len(CASES) >= 15
    assert len({case.id for case in CASES}) == len(CASES)
    assert {case.status for case in CASES} == {400, 401, 403, 415}
