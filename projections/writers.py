"""Writing a batch of events' rows with one statement per table.

Each read model's `evolve` is pure (projections/patients.py, consultations.py,
approvals.py); these writers run it over a batch in memory and hand the results
to PostgreSQL as one array per column, unnested by a single upsert: a batch of
fifty events costs a handful of round trips, not a few per event.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import asyncpg
import msgspec

from events.sqlfiles import queries
from events.types import StoredEvent
from projections import approvals, consultations, patients

T = TypeVar("T", bound=msgspec.Struct)


def columns(rows: Sequence[msgspec.Struct]) -> list[list[Any]]:
    """Rows as one list per field, in field order: the arguments of an unnest upsert."""
    return [list(column) for column in zip(*(msgspec.structs.astuple(row) for row in rows), strict=True)]


async def apply_patients(conn: asyncpg.Connection, events: Sequence[StoredEvent]) -> None:
    """Write `patients.evolve`'s result for every patient in the batch, in key order (so that two
    batches sharing patients lock them in the same order). The upsert's guard applies the same
    position rule atomically, because another slot's stream of the same patient may be projected
    at the same moment by another worker."""
    latest: dict[tuple[int, uuid.UUID], patients.PatientRow] = {}
    for event in events:
        if (key := patients.key(event)) is None:
            continue
        if (row := patients.evolve(latest.get(key), event)) is not None:
            latest[key] = row
    if latest:
        rows = [latest[key] for key in sorted(latest)]
        await conn.execute(queries("projections")["upsert_patients"], *columns(rows))


async def apply_consultations(conn: asyncpg.Connection, events: Sequence[StoredEvent]) -> None:
    """Write `consultations.evolve`'s result for every consultation in the batch."""
    await _apply_per_consultation(conn, events, table="consultation", row_type=consultations.ConsultationRow,
                                  key=consultations.key, evolve=consultations.evolve)


async def apply_approvals(conn: asyncpg.Connection, events: Sequence[StoredEvent]) -> None:
    """Write `approvals.evolve`'s result for every consultation in the batch."""
    await _apply_per_consultation(conn, events, table="approval", row_type=approvals.ApprovalRow,
                                  key=approvals.key, evolve=approvals.evolve)


async def _apply_per_consultation(conn: asyncpg.Connection, events: Sequence[StoredEvent], *, table: str,
                                  row_type: type[T], key: Callable[[StoredEvent], uuid.UUID | None],
                                  evolve: Callable[[T | None, StoredEvent], T | None]) -> None:
    """Load the batch's consultation-keyed rows, evolve them in event order, write back the changed ones.

    Safe as load-then-write because the caller holds the checkpoint locks of every
    stream in the batch, and a consultation's events all belong to one stream.
    """
    ids = list(dict.fromkeys(cid for event in events if (cid := key(event)) is not None))
    if not ids:
        return
    sql = queries("projections")
    current: dict[uuid.UUID, T] = {
        r["consultation_id"]: row_type(**dict(r)) for r in await conn.fetch(sql[f"get_{table}_rows"], ids)
    }
    changed: dict[uuid.UUID, T] = {}
    for event in events:
        if (consultation_id := key(event)) is None:
            continue
        row = evolve(current.get(consultation_id), event)
        if row is None:
            raise LookupError(f"a decision arrived for a {table} row this projection has not seen")
        if row is not current.get(consultation_id):
            changed.pop(consultation_id, None)  # re-inserted: `changed` is in order of last change
            current[consultation_id] = changed[consultation_id] = row
    if changed:
        # Written in order of last change, as the log made them, so each row lands on a state the
        # unique indexes allow: a slot's decided consultation stops being pending before its
        # next submission's row arrives (approvals_one_pending_per_slot).
        await conn.execute(sql[f"upsert_{table}s"], *columns(list(changed.values())))
