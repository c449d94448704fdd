"""Writing a batch of events' rows with one statement per table.

Projections evolve rows in memory (their `evolve` is pure) and hand the results
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
from events.store import StoredEvent
from events.types import ConsultDecided, ConsultSubmitted

T = TypeVar("T", bound=msgspec.Struct)


def columns(rows: Sequence[msgspec.Struct]) -> list[list[Any]]:
    """Rows as one list per field, in field order: the arguments of an unnest upsert."""
    return [list(column) for column in zip(*(msgspec.structs.astuple(row) for row in rows), strict=True)]


def consultation_of(event: StoredEvent) -> uuid.UUID | None:
    """The consultation an event is about, if any."""
    data = event.data
    return data.consultation_id if isinstance(data, ConsultSubmitted | ConsultDecided) else None


async def apply_per_consultation(conn: asyncpg.Connection, events: Sequence[StoredEvent], *, table: str,
                                 row_type: type[T], evolve: Callable[[T | None, StoredEvent], T | None]) -> None:
    """Load the batch's consultation-keyed rows, evolve them in event order, write back the changed ones.

    Safe as load-then-write because the caller holds the checkpoint locks of every
    stream in the batch, and a consultation's events all belong to one stream.
    """
    ids = list(dict.fromkeys(cid for event in events if (cid := consultation_of(event)) is not None))
    if not ids:
        return
    sql = queries("projections")
    current: dict[uuid.UUID, T] = {
        r["consultation_id"]: row_type(**dict(r)) for r in await conn.fetch(sql[f"get_{table}_rows"], ids)
    }
    changed: dict[uuid.UUID, T] = {}
    for event in events:
        if (consultation_id := consultation_of(event)) is None:
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
