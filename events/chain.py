"""The per-stream hash chain, recomputed outside the database (docs/INTEGRITY.md defines it).

The trigger of migration 0011 computes the same thing inside the appending transaction; this
module is what a verifier uses instead of trusting the database's own functions (someone who can
edit rows can also redefine a function). Pure: no driver, no I/O.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import struct
import uuid
from dataclasses import dataclass

ZERO_HASH = bytes(32)  # the "previous hash" of a stream's first event
ENCODING_TAG = b"intake-event-v1"
_NULL = b"\xff\xff\xff\xff"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_LENGTH = struct.Struct(">I").pack


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
    return _LENGTH(len(value)) + value


def canonical_bytes(row: StoredRow) -> bytes:
    """The bytes an event's hash covers: a tag, then each field length-prefixed."""
    return canonical_of(row.event_id, row.stream_id, row.stream_version, row.event_type, row.schema_version,
                        row.business_id, row.idempotency_key, row.request_fingerprint, row.payload, row.metadata,
                        row.recorded_at)


def canonical_of(event_id: object, stream_id: str, stream_version: int, event_type: str, schema_version: int,
                 business_id: int, idempotency_key: str | None, request_fingerprint: bytes | None, payload: str,
                 metadata: str, recorded_at: dt.datetime) -> bytes:
    """canonical_bytes from the columns themselves. (verify builds the same bytes from its COPY stream's
    own fields instead: events/log_scan.py; tests/unit/test_log_scan.py holds the two together.)"""
    n = _LENGTH
    a, b, c = str(event_id).encode(), stream_id.encode(), b"%d" % stream_version
    d, e, f = event_type.encode(), b"%d" % schema_version, b"%d" % business_id
    p, m, t = payload.encode(), metadata.encode(), b"%d" % micros(recorded_at)
    key = _NULL if idempotency_key is None else _field(idempotency_key.encode())
    return b"".join((ENCODING_TAG, n(len(a)), a, n(len(b)), b, n(len(c)), c, n(len(d)), d, n(len(e)), e,
                     n(len(f)), f, key, _field(request_fingerprint), n(len(p)), p, n(len(m)), m, n(len(t)), t))


def event_hash(prev: bytes, row: StoredRow) -> bytes:
    """SHA-256(previous hash of the stream || canonical bytes)."""
    return hashlib.sha256(prev + canonical_bytes(row)).digest()
