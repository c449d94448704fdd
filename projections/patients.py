"""Read model: one patient per (business, customer_id), details from their latest submission."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from events.sqlfiles import queries
from events.store import StoredEvent
from events.types import ConsultSubmitted
from projections.rows import columns

NAME = "patients"


class PatientRow(msgspec.Struct, frozen=True, kw_only=True):
    """A patients row."""

    business_id: int
    patient_id: object
    customer_id: str
    first_name: str
    last_name: str
    email: str
    phone: str | None
    date_of_birth: object
    source_position: int
    updated_at: object


def evolve(row: PatientRow | None, event: StoredEvent) -> PatientRow | None:
    """The patient after one event: a later submission (by log position) replaces the details."""
    data = event.data
    if not isinstance(data, ConsultSubmitted):
        return row
    if row is not None and row.source_position >= event.position:
        return row
    return PatientRow(
        business_id=event.business_id, patient_id=data.patient_id, customer_id=data.customer_id,
        first_name=data.patient.first_name, last_name=data.patient.last_name, email=data.patient.email,
        phone=data.patient.phone, date_of_birth=data.patient.date_of_birth, source_position=event.position,
        updated_at=data.submitted_at,
    )


async def apply(conn: asyncpg.Connection, events: Sequence[StoredEvent]) -> None:
    """Write `evolve`'s result for every patient in the batch, in key order (so that two batches
    sharing patients lock them in the same order). The upsert's guard applies the same position
    rule atomically, because another slot's stream of the same patient may be projected at the
    same moment by another worker."""
    latest: dict[tuple[int, Any], PatientRow] = {}
    for event in events:
        data = event.data
        if isinstance(data, ConsultSubmitted):
            key = (event.business_id, data.patient_id)
            if (row := evolve(latest.get(key), event)) is not None:
                latest[key] = row
    if latest:
        rows = [latest[key] for key in sorted(latest)]
        await conn.execute(queries("projections")["upsert_patients"], *columns(rows))
