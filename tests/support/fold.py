"""A fresh in-memory fold of the whole log, in position order, with the projections' own pure
`evolve` functions: what the read tables must equal, row for row."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from events.store import decode_record
from projections import approvals, consultations, patients

_ALL_EVENTS = """
SELECT position, event_id, stream_id, stream_version, event_type, schema_version, business_id,
       payload::text AS payload, metadata::text AS metadata, recorded_at
FROM events ORDER BY position"""


async def expected_tables(conn: asyncpg.Connection) -> dict[str, dict[Any, dict[str, Any]]]:
    """{table: {primary key: row}} as the log says they should be."""
    rows: dict[str, dict[Any, Any]] = {"patients": {}, "consultations": {}, "approvals": {}}
    for record in await conn.fetch(_ALL_EVENTS):
        event = decode_record(record)
        for table, model in (("patients", patients), ("consultations", consultations), ("approvals", approvals)):
            if (key := model.key(event)) is not None and (row := model.evolve(rows[table].get(key), event)) is not None:
                rows[table][key] = row
    return {table: {key: msgspec.structs.asdict(row) for key, row in table_rows.items()}
            for table, table_rows in rows.items()}


async def actual_tables(conn: asyncpg.Connection) -> dict[str, dict[Any, dict[str, Any]]]:
    """The read tables as they are."""
    return {
        "patients": {(r["business_id"], r["patient_id"]): dict(r) for r in await conn.fetch("SELECT * FROM patients")},
        "consultations": {r["consultation_id"]: dict(r) for r in await conn.fetch("SELECT * FROM consultations")},
        "approvals": {r["consultation_id"]: dict(r) for r in await conn.fetch("SELECT * FROM approvals")},
    }
