"""Read model: the clinicians' queue, one approval per consultation, at most one pending per slot."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import asyncpg
import msgspec

from events.store import StoredEvent
from events.types import ConsultDecided, ConsultSubmitted
from projections.rows import apply_per_consultation

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


async def apply(conn: asyncpg.Connection, events: Sequence[StoredEvent]) -> None:
    """Write `evolve`'s result for every consultation in the batch."""
    await apply_per_consultation(conn, events, table="approval", row_type=ApprovalRow, evolve=evolve)
