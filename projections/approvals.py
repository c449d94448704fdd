"""Read model: the clinicians' queue, one approval per consultation, at most one pending per slot."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import msgspec

from events.sqlfiles import queries
from events.store import StoredEvent
from events.types import ConsultDecided, ConsultSubmitted
from projections.consultations import consultation_of

NAME = "approvals"


class ApprovalRow(msgspec.Struct, frozen=True, kw_only=True):
    """An approvals row."""

    consultation_id: uuid.UUID
    business_id: int
    customer_id: str
    product_id: str
    status: str
    requested_at: dt.datetime
    decided_at: dt.datetime | None
    clinician_id: str | None
    position: int


def evolve(row: ApprovalRow | None, event: StoredEvent) -> ApprovalRow | None:
    """The approval after one event of its stream."""
    data = event.data
    if isinstance(data, ConsultSubmitted):
        return ApprovalRow(consultation_id=data.consultation_id, business_id=event.business_id,
                           customer_id=data.customer_id, product_id=data.product_id, status="pending",
                           requested_at=data.submitted_at, decided_at=None, clinician_id=None,
                           position=event.position)
    if isinstance(data, ConsultDecided) and row is not None:
        return msgspec.structs.replace(row, status=data.decision, decided_at=data.decided_at,
                                       clinician_id=data.clinician_id)
    return row


async def apply(conn: asyncpg.Connection, event: StoredEvent) -> None:
    """Load the row, evolve it, write it back."""
    consultation_id = consultation_of(event)
    if consultation_id is None:
        return
    sql = queries("projections")
    record = await conn.fetchrow(sql["get_approval_row"], consultation_id)
    current = ApprovalRow(**dict(record)) if record else None
    row = evolve(current, event)
    if row is None:
        raise LookupError("a decision arrived for an approval this projection has not seen")
    if row is current:
        return
    await conn.execute(sql["upsert_approval"], *msgspec.structs.astuple(row))
