"""Sending bad requests to POST /v1/businesses/{slug}/consult-submissions and checking the answer.

A table row is a `Case`: one way to get the request wrong and the answer the API contract
requires: the exact 4xx as a problem+json document that names the failing field (for 422),
never echoes patient data, and writes nothing: no event, no outbox row. The tables live in
tests/integration/test_bad_bodies.py and test_bad_headers.py; each runs against one server
and one database of its own (`bad_input_api`), which no case may write to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx

from service.devstack import EmbeddedPostgres, EmbeddedRedis
from tests.support.databases import cloned_database
from tests.support.deployment import deployment_settings
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


# --- one server and one database per table -----------------------------------------------

@dataclasses.dataclass(frozen=True)
class BadInputApi:
    """The real API served in-process on its own database, with the keys a case can present."""

    client: httpx.AsyncClient
    db: asyncpg.Connection  # for counting what a case wrote
    keys: Keys


@contextlib.asynccontextmanager
async def bad_input_api(postgres: EmbeddedPostgres, template: str, redis: EmbeddedRedis,
                        name: str) -> AsyncIterator[BadInputApi]:
    """A fresh database `name_…` with businesses 'acme' (the target) and 'globex', and the API serving it.

    One per table, not per case: no case may write, so the cases cannot disturb each other,
    and each still checks that it wrote nothing itself."""
    async with cloned_database(postgres, template, f"{name}_{uuid.uuid4().hex[:8]}") as url:
        db = await asyncpg.connect(url)
        try:
            keys = Keys(acme=await make_tenant(db, SLUG), globex=await make_tenant(db, "globex"))
            settings = dataclasses.replace(deployment_settings(), database_url=url, redis_url=redis.url(),
                                           log_format="json")
            async with running_api(settings) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
                yield BadInputApi(http, db, keys)
        finally:
            await db.close()


# --- sending a case and checking the answer ----------------------------------------------

async def rows_written(db: asyncpg.Connection) -> tuple[int, int, int]:
    """How many rows the events and outbox tables hold, and how many patient keys are live."""
    row = await db.fetchrow("SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM outbox) AS outbox,"
                            " (SELECT count(*) FROM patient_keys WHERE destroyed_at IS NULL) AS keys")
    return row["events"], row["outbox"], row["keys"]


async def in_chunks(body: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    """The body as a stream, which httpx sends with chunked transfer encoding."""
    for start in range(0, len(body), size):
        yield body[start:start + size]


def request_headers(case: Case, keys: Keys) -> dict[str, str | bytes]:
    """The case's headers; an absent value leaves the header out."""
    wanted = {"Authorization": case.authorization(keys), "Idempotency-Key": case.idempotency_key(),
              "Content-Type": case.content_type}
    return {name: value for name, value in wanted.items() if value is not None}


async def send(api: BadInputApi, case: Case) -> tuple[httpx.Response, tuple[int, int], tuple[int, int]]:
    """POST the case; the answer and the (events, outbox) row counts before and after."""
    before = await rows_written(api.db)
    content = in_chunks(case.body) if case.chunked else case.body
    response = await api.client.post(URL, content=content, headers=request_headers(case, api.keys))
    return response, before, await rows_written(api.db)


def assert_rejected(case: Case, response: httpx.Response, before: tuple[int, int], after: tuple[int, int]) -> None:
    """The answer is the case's problem+json, names its field, leaks nothing, and nothing was written."""
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
