"""A fresh in-memory fold of the whole log, in position order, with the projections' own pure
`evolve` functions: what the read tables must equal, row for row."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from events.privacy import Keyring
from events.store import decode_record
from projections.as_of import fold

_ALL_EVENTS = """
SELECT position, event_id, stream_id, stream_version, event_type, schema_version, business_id,
       payload::text AS payload, metadata::text AS metadata, recorded_at, key_id, wrapped_key, kek_id
FROM event_rows ORDER BY position"""


async def expected_tables(conn: asyncpg.Connection, keyring: Keyring) -> dict[str, dict[Any, dict[str, Any]]]:
    """{table: {primary key: row}} as the log says they should be: projections/as_of.py's fold."""
    tables = fold(decode_record(record, keyring) for record in await conn.fetch(_ALL_EVENTS))
    return {table: {key: msgspec.structs.asdict(row) for key, row in rows.items()} for table, rows in tables.items()}


async def actual_tables(conn: asyncpg.Connection) -> dict[str, dict[Any, dict[str, Any]]]:
    """The read tables as they are."""
    return {
        "patients": {(r["business_id"], r["patient_id"]): dict(r) for r in await conn.fetch("SELECT * FROM patients")},
        "consultations": {r["consultation_id"]: dict(r) for r in await conn.fetch("SELECT * FROM consultations")},
        "approvals": {r["consultation_id"]: dict(r) for r in await conn.fetch("SELECT * FROM approvals")},
    }
