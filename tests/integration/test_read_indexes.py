"""Every filter the read API offers costs a page, not the tenant.

Each named read query runs under EXPLAIN (ANALYZE, BUFFERS) with the arguments
projections/queries.py passes, on a tenant of 200k consultations beside a second
tenant, under a custom plan and under a generic one (asyncpg prepares statements,
and after five executions PostgreSQL may switch a statement to its generic plan).
The rows go straight into the read tables: what is under test is the read queries.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from events.sqlfiles import queries
from tests.support.databases import cloned_database

BIG = 1  # the big tenant's business id, the other's is 2; the read tables have no foreign key to businesses
BIG_ROWS = 200_000
NIL = uuid.UUID(int=0)
# A page of n rows may touch a heap page per row plus a few index pages per level
# walked; the big tenant's consultations fill thousands of pages, so a plan that
# walks the tenant blows through this by two orders of magnitude.
INDEX_PAGES = 12
# Keyset reads may filter out the cursor's own row when only `position >= $2`
# bounds the index scan; anything more is a scan that filters row by row.
MAX_ROWS_REMOVED = 2

# One statement per table, both tenants interleaved in log order (big at even
# positions, the other at odd ones) the way a shared log would put them.
# In the big tenant: 1 % approved and no rejected consultation; a heavy customer
# with 10 % of the rows, none approved; 1 % of approvals pending, none rejected.
# The other tenant has every status, so 'rejected' is in the table's statistics.
FILL = [
    """
    INSERT INTO consultations (consultation_id, business_id, submission_id, patient_id, customer_id, product_id,
                               status, submitted_at, decided_at, decision, reason, clinician_id, stream_id,
                               version, position)
    SELECT gen_random_uuid(), t.business_id, gen_random_uuid(), gen_random_uuid(),
           CASE WHEN i % 10 = 0 THEN 'heavy' ELSE 'cus_' || i % 50000 END, 'prod_' || i,
           CASE WHEN t.business_id = 2 THEN (ARRAY['pending', 'approved', 'rejected'])[1 + i % 3]
                WHEN i % 100 = 1 THEN 'approved' ELSE 'pending' END,
           now(), NULL, NULL, NULL, NULL, 'consult-' || t.business_id || '-' || i, 1,
           2 * i + t.business_id - 1
    FROM (VALUES (1, {big}), (2, 3000)) AS t(business_id, n), generate_series(1, t.n) AS i
    """,
    """
    INSERT INTO approvals (consultation_id, business_id, customer_id, product_id, status, requested_at,
                           decided_at, clinician_id, position)
    SELECT gen_random_uuid(), t.business_id, 'cus_' || i % 50000, 'prod_' || i,
           CASE WHEN t.business_id = 2 THEN (ARRAY['pending', 'approved', 'rejected'])[1 + i % 3]
                WHEN i % 100 = 2 THEN 'pending' ELSE 'approved' END,
           now(), NULL, NULL, 2 * i + t.business_id - 1
    FROM (VALUES (1, {big}), (2, 3000)) AS t(business_id, n), generate_series(1, t.n) AS i
    """,
    """
    INSERT INTO patients (business_id, patient_id, customer_id, first_name, last_name, email, phone,
                          date_of_birth, source_position, updated_at)
    SELECT t.business_id, gen_random_uuid(), 'cus_' || i, 'A', 'B', 'a@example.com', NULL, '1990-01-01',
           i, now()
    FROM (VALUES (1, 50000), (2, 3000)) AS t(business_id, n), generate_series(1, t.n) AS i
    """,
]
FILL = [statement.format(big=BIG_ROWS) for statement in FILL]


@dataclass(frozen=True)
class Data:
    """The filled database and rows the cases point at."""

    conn: asyncpg.Connection
    middle: tuple[int, uuid.UUID]  # a consultation halfway through the big tenant: a cursor
    middle_approval: tuple[int, uuid.UUID]
    middle_patient: uuid.UUID
    consultation: uuid.UUID
    other_consultation: uuid.UUID  # belongs to the other tenant
    patient: uuid.UUID
    other_patient: uuid.UUID


@pytest.fixture(scope="module")
async def data(postgres, template_database) -> AsyncIterator[Data]:
    async with cloned_database(postgres, template_database, f"read_indexes_{os.getpid()}") as url:
        conn = await asyncpg.connect(url)
        try:
            for statement in FILL:
                await conn.execute(statement)
            await conn.execute("ANALYZE consultations, approvals, patients")
            yield Data(conn, *await _row_keys(conn))
        finally:
            await conn.close()


async def _row_keys(conn: asyncpg.Connection) -> tuple[Any, ...]:
    # The big tenant's row i sits at position 2i: position BIG_ROWS is its middle row.
    middle = await conn.fetchrow("SELECT position, consultation_id FROM consultations "
                                 "WHERE business_id = 1 AND position = $1", BIG_ROWS)
    approval = await conn.fetchrow("SELECT position, consultation_id FROM approvals "
                                   "WHERE business_id = 1 AND position = $1", BIG_ROWS)
    middle_patient = await conn.fetchval("SELECT patient_id FROM patients WHERE business_id = 1 "
                                         "ORDER BY patient_id OFFSET 25000 LIMIT 1")
    patient = await conn.fetchval("SELECT patient_id FROM patients WHERE business_id = 1 LIMIT 1")
    other_patient = await conn.fetchval("SELECT patient_id FROM patients WHERE business_id = 2 LIMIT 1")
    consultations = await conn.fetch("SELECT business_id, consultation_id FROM consultations "
                                      "WHERE stream_id IN ('consult-1-7', 'consult-2-7') ORDER BY business_id")
    return ((middle["position"], middle["consultation_id"]), (approval["position"], approval["consultation_id"]),
            middle_patient, consultations[0]["consultation_id"], consultations[1]["consultation_id"],
            patient, other_patient)


@dataclass(frozen=True)
class Case:
    """A read as the API makes it: the query, its arguments, the index it should walk, the rows it returns."""

    label: str
    query: str
    args: tuple[Any, ...]
    index: str
    rows: int


def cases(d: Data) -> Iterator[Case]:
    """Every filter shape of projections/queries.py, with its arguments in the order the call sites pass them."""
    first, page, one = (0, NIL), 21, 2  # limit=20 (the default) and limit=1 fetch one extra row
    yield Case("consultation by id", "consultation", (BIG, d.consultation), "consultations_pkey", 1)
    yield Case("another tenant's consultation", "consultation", (BIG, d.other_consultation), "consultations_pkey", 0)
    yield Case("consultations", "consultations", (BIG, *first, None, page), "consultations_by_business", page)
    yield Case("consultations after a cursor", "consultations", (BIG, *d.middle, None, 101),
               "consultations_by_business", 101)
    yield Case("status no row has", "consultations_in_status", (BIG, *first, "rejected", one),
               "consultations_by_status", 0)
    yield Case("a rare status", "consultations_in_status", (BIG, *first, "approved", 101),
               "consultations_by_status", 101)
    yield Case("a rare status after a cursor", "consultations_in_status", (BIG, *d.middle, "approved", page),
               "consultations_by_status", page)
    yield Case("a heavy customer", "consultations_of_customer", (BIG, *first, None, page, "heavy"),
               "consultations_by_customer", page)
    yield Case("an unknown customer", "consultations_of_customer", (BIG, *first, None, page, "nobody"),
               "consultations_by_customer", 0)
    yield Case("a heavy customer in a status none of theirs has", "consultations_of_customer_in_status",
               (BIG, *first, "approved", one, "heavy"), "consultations_by_customer_status", 0)
    yield Case("a heavy customer in their status after a cursor", "consultations_of_customer_in_status",
               (BIG, *d.middle, "pending", page, "heavy"), "consultations_by_customer_status", page)
    yield Case("patient by id", "patient", (BIG, d.patient), "patients_pkey", 1)
    yield Case("another tenant's patient", "patient", (BIG, d.other_patient), "patients_pkey", 0)
    yield Case("patients", "patients", (BIG, NIL, page), "patients_pkey", page)
    yield Case("patients after a cursor", "patients", (BIG, d.middle_patient, 101), "patients_pkey", 101)
    yield Case("pending approvals (the default)", "approvals", (BIG, *first, "pending", page),
               "approvals_by_business", page)
    yield Case("approvals in a status no row has", "approvals", (BIG, *first, "rejected", one),
               "approvals_by_business", 0)
    yield Case("approvals after a cursor", "approvals", (BIG, *d.middle_approval, "approved", 101),
               "approvals_by_business", 101)


def _literal(value: Any) -> str:
    # Test-made values only (ints, UUIDs, fixed strings): EXECUTE takes no bind parameters.
    if value is None:
        return "NULL"
    return str(value) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'"


async def explain(conn: asyncpg.Connection, case: Case, mode: str) -> dict[str, Any]:
    """The executed plan of the case's query, prepared as asyncpg prepares it, in plan_cache_mode `mode`."""
    await conn.execute(f"SET plan_cache_mode = {mode}")
    await conn.execute(f"PREPARE read_query AS {queries('reads')[case.query].rstrip(';')}")
    try:
        raw = await conn.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE read_query("
                                  + ", ".join(map(_literal, case.args)) + ")")
    finally:
        await conn.execute("DEALLOCATE read_query")
        await conn.execute("RESET plan_cache_mode")
    return json.loads(raw)[0]["Plan"]


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def problems(case: Case, plan: dict[str, Any]) -> list[str]:
    """What makes the plan cost more than a page; empty when it costs a page."""
    found = []
    scans = [n for n in nodes(plan) if "Relation Name" in n]
    kinds = {(n["Node Type"], n.get("Index Name")) for n in scans}
    if kinds - {("Index Scan", case.index), ("Index Only Scan", case.index)}:
        found.append(f"scans {sorted(kinds, key=str)}, expected {case.index}")
    removed = sum(n.get("Rows Removed by Filter", 0) + n.get("Rows Removed by Index Recheck", 0)
                  for n in nodes(plan))
    if removed > MAX_ROWS_REMOVED:
        found.append(f"{removed} rows removed by filter")
    buffers = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
    if buffers > max(case.rows, 1) + INDEX_PAGES:
        found.append(f"{buffers} buffers for {case.rows} rows")
    if plan["Actual Rows"] != case.rows:
        found.append(f"returned {plan['Actual Rows']} rows, expected {case.rows}")
    return found


@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
async def test_every_read_filter_touches_a_page_of_rows_not_the_tenant(data, mode):
    failures = {}
    for case in cases(data):
        plan = await explain(data.conn, case, mode)
        if found := problems(case, plan):
            failures[case.label] = found
    assert not failures, json.dumps(failures, indent=1)
