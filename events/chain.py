"""The per-stream hash chain, recomputed outside the database (docs/INTEGRITY.md defines it).

The trigger of migration 0011 computes the same thing inside the appending transaction; this
module is what a verifier uses instead of trusting the database's own functions (someone who can
edit rows can also redefine a function). Pure: no driver, no I/O.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass

ZERO_HASH = bytes(32)  # the "previous hash" of a stream's first event
ENCODING_TAG = b"intake-event-v1"
_NULL = b"\xff\xff\xff\xff"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class StoredRow:
    """An event's columns as stored; payload and metadata as PostgreSQL's jsonb text output."""

    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    event_type: str
    schema_version: int
    business_id: int
    idempotency_key: str | None
    request_fingerprint: bytes | None
    payload: str
    metadata: str
    recorded_at: dt.datetime


def micros(when: dt.datetime) -> int:
    """Integer microseconds since the Unix epoch: exactly what a timestamptz holds."""
    return (when - _EPOCH) // _MICROSECOND


def _field(value: bytes | None) -> bytes:
    if value is None:
        return _NULL
    return len(value).to_bytes(4, "big") + value


def canonical_bytes(row: StoredRow) -> bytes:
    """The bytes an event's hash covers: a tag, then each field length-prefixed."""
    key = row.idempotency_key
    return b"".join((
        ENCODING_TAG,
        _field(str(row.event_id).encode()), _field(row.stream_id.encode()),
        _field(str(row.stream_version).encode()), _field(row.event_type.encode()),
        _field(str(row.schema_version).encode()), _field(str(row.business_id).encode()),
        _field(None if key is None else key.encode()), _field(row.request_fingerprint),
        _field(row.payload.encode()), _field(row.metadata.encode()),
        _field(str(micros(row.recorded_at)).encode()),
    ))


def event_hash(prev: bytes, row: StoredRow) -> bytes:
    """SHA-256(previous hash of the stream || canonical bytes)."""
    return hashlib.sha256(prev + canonical_bytes(row)).digest()
