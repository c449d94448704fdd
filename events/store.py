"""The event-store adapter: append with optimistic concurrency and idempotency, and readers."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import msgspec

from events.codec import decode_payload, encode_payload, type_and_version
from events.errors import UnknownPosition, translating_driver_errors
from events.group_commit import Committed, FaultPoint, GroupCommitter, Row, no_fault
from events.sqlfiles import queries
from events.types import Event, EventMetadata, Idempotency, StoredEvent

_METADATA = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Appended:
    """The committed positions of one append, in the order the events were given."""

    positions: tuple[int, ...]
    recorded_at: dt.datetime


class EventStore:
    """Append-only access to the `events` table and its outbox."""

    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float = 2.0, fault: FaultPoint = no_fault) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout
        self._committer = GroupCommitter(pool, acquire_timeout=acquire_timeout, fault=fault)
        self._sql = queries("events")

    async def append(
        self,
        *,
        stream_id: str,
        expected_version: int,
        events: Sequence[tuple[uuid.UUID, Event]],
        business_id: int,
        metadata: EventMetadata,
        idempotency: Idempotency | None,
    ) -> Appended:
        """Append events after `expected_version` of the stream, with their outbox rows.

        Raises AppendConflict (nothing written) if the stream has moved on or
        the idempotency key is taken; the caller reloads and decides again.
        """
        encoded_metadata = _METADATA.encode(metadata).decode()
        rows = []
        for offset, (event_id, event) in enumerate(events):
            event_type, schema_version = type_and_version(event)
            # The key sits on the request's first event only: one key, one request.
            key = idempotency if offset == 0 else None
            rows.append(Row(
                event_id=event_id, stream_id=stream_id, stream_version=expected_version + offset + 1,
                event_type=event_type, schema_version=schema_version, business_id=business_id,
                idempotency_key=key.key if key else None, request_fingerprint=key.fingerprint if key else None,
                payload=encode_payload(event).decode(), metadata=encoded_metadata,
            ))
        committed: Committed = await self._committer.append(rows)
        return Appended(positions=committed.positions, recorded_at=committed.recorded_at)  # type: ignore[arg-type]

    async def read_stream(self, stream_id: str) -> list[StoredEvent]:
        """Every event of one stream, in stream order."""
        return [decode_record(r) for r in await self._fetch("read_stream", stream_id)]

    async def find_by_idempotency_key(self, business_id: int, key: str) -> tuple[StoredEvent, bytes] | None:
        """The event that first used this key, with its request fingerprint."""
        records = await self._fetch("find_by_idempotency_key", business_id, key)
        return (decode_record(records[0]), bytes(records[0]["request_fingerprint"])) if records else None

    async def stream_of_consultation(self, business_id: int, consultation_id: uuid.UUID) -> str | None:
        """The stream a consultation lives in, straight from the log."""
        records = await self._fetch("stream_of_consultation", str(consultation_id), business_id)
        return records[0]["stream_id"] if records else None

    async def read_all(self, *, after: int, limit: int) -> list[StoredEvent]:
        """Events after the one at position `after` (0: from the start), in a
        commit-safe order that never passes over an event committing later."""
        tx_id = "0"
        if after > 0:
            cursor = await self._fetch("cursor_of_position", after)
            if not cursor:
                raise UnknownPosition(f"{UnknownPosition.__doc__} ({after})")
            tx_id = cursor[0]["tx_text"]
        return [decode_record(r) for r in await self._fetch("read_all", tx_id, after, limit)]

    async def _fetch(self, name: str, *args: object) -> list[asyncpg.Record]:
        with translating_driver_errors():
            async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                return await conn.fetch(self._sql[name], *args)


def decode_record(record: asyncpg.Record) -> StoredEvent:
    """A row of the log (as the named queries select it), decoded."""
    return StoredEvent(
        position=record["position"], event_id=record["event_id"], stream_id=record["stream_id"],
        stream_version=record["stream_version"], event_type=record["event_type"],
        schema_version=record["schema_version"], business_id=record["business_id"],
        data=decode_payload(record["event_type"], record["schema_version"], record["payload"]),
        metadata=msgspec.Raw(record["metadata"].encode()), recorded_at=record["recorded_at"],
    )
