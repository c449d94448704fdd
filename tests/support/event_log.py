"""Writing straight to the event log through the store, below the HTTP API: one decision event per call."""

from __future__ import annotations

import datetime as dt
import uuid

from events.store import EventStore
from events.types import ConsultDecided, EventMetadata, Idempotency

META = EventMetadata(request_id="req", actor="test", correlation_id="req")


def decided(n: int = 0) -> ConsultDecided:
    """A decision for a fresh consultation id; no read model has seen its submission."""
    return ConsultDecided(consultation_id=uuid.uuid4(), decision="approved", reason=f"r{n}", clinician_id="c",
                          decided_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


async def append(store: EventStore, stream: str, expected: int, key: str | None = None) -> int:
    """Append one event at `expected` + 1 to `stream` (with an idempotency record if `key`); its position."""
    appended = await store.append(stream_id=stream, expected_version=expected, events=[(uuid.uuid4(), decided())],
                                  business_id=1, metadata=META,
                                  idempotency=Idempotency(key, b"fp") if key else None)
    return appended.positions[0]
