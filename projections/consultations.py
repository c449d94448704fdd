"""Read model: one consultation per submission, with its decision."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import TypeVar

import asyncpg
import msgspec

from events.sqlfiles import queries
from events.store import StoredEvent
from events.types import ConsultDecided, ConsultSubmitted

NAME = "consultations"
T = TypeVar("T", bound=msgspec.Struct)


class ConsultationRow(msgspec.Struct, frozen=True, kw_only=True):
    """A consultations row."""

    consultation_id: uuid.UUID
    business_id: int
    submission_id: uuid.UUID
    patient_id: uuid.UUID
    customer_id: str
    product_id: str
    status: str
    submitted_at: dt.datetime
    decided_at: dt.datetime | None
    decision: str | None
    reason: str | None
    clinician_id: str | None
    stream_id: str
    version: int
    position: int


def evolve(row: ConsultationRow | None, event: StoredEvent) -> ConsultationRow | None:
    """The consultation after one event of its stream."""
    data = event.data
    if isinstance(data, ConsultSubmitted):
        return ConsultationRow(
            consultation_id=data.consultation_id, business_id=event.business_id, submission_id=data.submission_id,
            patient_id=data.patient_id, customer_id=data.customer_id, product_id=data.product_id,
            status="pending", submitted_at=data.submitted_at, decided_at=None, decision=None, reason=None,
            clinician_id=None, stream_id=event.stream_id, version=event.stream_version, position=event.position)
    if isinstance(data, ConsultDecided) and row is not None:
        return msgspec.structs.replace(row, status=data.decision, decided_at=data.decided_at,
                                       decision=data.decision, reason=data.reason,
                                       clinician_id=data.clinician_id, version=event.stream_version)
    return row


def consultation_of(event: StoredEvent) -> uuid.UUID | None:
    """The consultation an event is about, if any."""
    return getattr(event.data, "consultation_id", None) if isinstance(
        event.data, ConsultSubmitted | ConsultDecided) else None


async def apply_per_consultation(conn: asyncpg.Connection, event: StoredEvent, *, table: str,
                                 row_type: type[T], evolve: Callable[[T | None, StoredEvent], T | None]) -> None:
    """Load a consultation-keyed row, evolve it, write it back.

    Safe as load-then-write because the stream's checkpoint lock serializes
    every event of the consultation's stream.
    """
    consultation_id = consultation_of(event)
    if consultation_id is None:
        return
    sql = queries("projections")
    record = await conn.fetchrow(sql[f"get_{table}_row"], consultation_id)
    current = row_type(**dict(record)) if record else None
    row = evolve(current, event)
    if row is None:
        raise LookupError(f"a decision arrived for a {table} row this projection has not seen")
    if row is not current:
        await conn.execute(sql[f"upsert_{table}"], *msgspec.structs.astuple(row))


async def apply(conn: asyncpg.Connection, event: StoredEvent) -> None:
    """Write `evolve`'s result for the event's consultation."""
    await apply_per_consultation(conn, event, table="consultation", row_type=ConsultationRow, evolve=evolve)
