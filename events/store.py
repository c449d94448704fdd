"""The event-store adapter: append with optimistic concurrency and idempotency, and readers."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg
import msgspec

from events import keystore
from events.codec import UnknownEventType, decode_payload, encode_payload, type_and_version
from events.errors import AppendConflict, KeyUnavailable, UnknownPosition, translating_driver_errors
from events.group_commit import Committed, FaultPoint, GroupCommitter, Row
from events.keystore import Forgotten
from events.privacy import DataKey, Keyring, Undecryptable, open_json, unknown_key
from events.sqlfiles import queries
from events.types import ConsultSubmitted, Event, EventMetadata, Idempotency, StoredEvent

_METADATA = msgspec.json.Encoder()
# What decode_record (and a fold or a body made from what it returns) raises when the row itself is at
# fault, not the database: retrying cannot help (the projector parks it, a webhook is dead-lettered).
UNREADABLE = (UnknownEventType, Undecryptable, msgspec.DecodeError, LookupError, ValueError, TypeError)
# Appends that find their patient's key gone or superseded re-encrypt and try again; two more
# rounds cover a key destroyed and another created in between, more means something is wrong.
_KEY_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Appended:
    """The committed positions of one append, in the order the events were given."""

    positions: tuple[int, ...]
    recorded_at: dt.datetime


class EventStore:
    """Append-only access to the `events` table and its outbox."""

    def __init__(self, pool: asyncpg.Pool, keyring: Keyring, *, acquire_timeout: float = 2.0,
                 fault: FaultPoint | None = None) -> None:
        self._pool = pool
        self._keyring = keyring
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
        for _ in range(_KEY_ATTEMPTS):
            rows = [self._row(stream_id, expected_version + offset + 1, event_id, event, business_id,
                              encoded_metadata, idempotency if offset == 0 else None)  # one key, one request
                    for offset, (event_id, event) in enumerate(events)]
            try:
                committed: Committed = await self._committer.append(rows)
            except KeyUnavailable:
                # Another process created this patient's key first, or it was destroyed since
                # this process last used it, or this process started while the database was down
                # and its KEK was never checked: check it (or refuse to write), then encrypt again
                # with the key the database has now.
                await self._learn_write_keys(rows)
                continue
            return Appended(positions=committed.positions, recorded_at=committed.recorded_at)  # type: ignore[arg-type]
        raise KeyUnavailable(KeyUnavailable.__doc__)

    def _row(self, stream_id: str, version: int, event_id: uuid.UUID, event: Event, business_id: int,
             metadata: str, key: Idempotency | None) -> Row:
        event_type, schema_version = type_and_version(event)
        data_key: DataKey | None = None
        if isinstance(event, ConsultSubmitted) and self._keyring.sealing:
            data_key = self._keyring.write_key(business_id, event.patient_id)
            payload = self._keyring.seal(event, event_id, data_key).decode()
        else:
            payload = encode_payload(event).decode()
        return Row(event_id=event_id, stream_id=stream_id, stream_version=version, event_type=event_type,
                   schema_version=schema_version, business_id=business_id,
                   idempotency_key=key.key if key else None, request_fingerprint=key.fingerprint if key else None,
                   payload=payload, metadata=metadata, data_key=data_key)

    async def _learn_write_keys(self, rows: Sequence[Row]) -> None:
        with translating_driver_errors():
            async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                await keystore.check_keks(conn, self._keyring.keks)
        for row in rows:
            if (key := row.data_key) is not None:
                live = await self._fetch("live_patient_key", key.business_id, key.patient_id)
                learnt = (DataKey(live[0]["key_id"], key.business_id, key.patient_id, live[0]["wrapped_key"],
                                  live[0]["kek_id"], self._keyring.data_key(live[0]["key_id"], live[0]["wrapped_key"],
                                                                            live[0]["kek_id"]))
                          if live else None)
                self._keyring.use_for_writing(learnt, key.business_id, key.patient_id)

    async def forget(self, business_id: int, patient_id: uuid.UUID, stream_id: str,
                     event: Callable[[tuple[uuid.UUID, ...]], Event], event_id: uuid.UUID, metadata: EventMetadata,
                     then: Callable[[asyncpg.Connection, StoredEvent], Awaitable[None]]) -> Forgotten | None:
        """Destroy a patient's data keys, append `event(destroyed key ids)` to `stream_id` and run
        `then` with the stored event, atomically (events/keystore.py); retried if another append
        takes the stream's next version first."""
        made: list[Event] = []

        def row(destroyed: tuple[uuid.UUID, ...]) -> Row:
            made.append(event(destroyed))
            return self._row(stream_id, 0, event_id, made[-1], business_id, _METADATA.encode(metadata).decode(), None)

        async def stored(conn: asyncpg.Connection, appended: Row, record: asyncpg.Record) -> None:
            await then(conn, StoredEvent(
                position=record["position"], event_id=event_id, stream_id=stream_id,
                stream_version=appended.stream_version, event_type=appended.event_type,
                schema_version=appended.schema_version, business_id=business_id, data=made[-1],
                metadata=msgspec.Raw(appended.metadata.encode()), recorded_at=record["recorded_at"]))

        for _ in range(_KEY_ATTEMPTS):
            with translating_driver_errors():
                async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                    try:
                        return await keystore.forget(conn, business_id, patient_id, stream_id, row, stored)
                    except AppendConflict:
                        continue
        raise AppendConflict(AppendConflict.__doc__)

    async def read_stream(self, stream_id: str) -> list[StoredEvent]:
        """Every event of one stream, in stream order."""
        return [decode_record(r, self._keyring) for r in await self._fetch("read_stream", stream_id)]

    async def find_by_idempotency_key(self, business_id: int, key: str) -> tuple[StoredEvent, bytes] | None:
        """The event that first used this key, with its request fingerprint."""
        records = await self._fetch("find_by_idempotency_key", business_id, key)
        return (decode_record(records[0], self._keyring), bytes(records[0]["request_fingerprint"])) if records else None

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
        return [decode_record(r, self._keyring) for r in await self._fetch("read_all", tx_id, after, limit)]

    async def _fetch(self, name: str, *args: object) -> list[asyncpg.Record]:
        with translating_driver_errors():
            async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                return await conn.fetch(self._sql[name], *args)


def decode_record(record: asyncpg.Record, keyring: Keyring | None) -> StoredEvent:
    """A row of the log (as the named queries select it, from event_rows), decoded; its personal
    fields decrypted with the patient's key, or ERASED if that key was destroyed, or if the reader
    needs no personal data and has no keyring (None: nothing is decrypted)."""
    return StoredEvent(
        position=record["position"], event_id=record["event_id"], stream_id=record["stream_id"],
        stream_version=record["stream_version"], event_type=record["event_type"],
        schema_version=record["schema_version"], business_id=record["business_id"],
        data=decode_data(record, keyring),
        metadata=msgspec.Raw(record["metadata"].encode()), recorded_at=record["recorded_at"],
    )


def decode_data(record: asyncpg.Record, keyring: Keyring | None) -> Event:
    """The typed event of a row read from event_rows (with its key columns, see migration 0010)."""
    return decode_payload(record["event_type"], record["schema_version"], payload_json(record, keyring))


def payload_json(record: asyncpg.Record, keyring: Keyring | None) -> str | bytes:
    """A row's payload as written before sealing (its recorded version; personal fields decrypted,
    or ERASED if the key was destroyed)."""
    if record["key_id"] is None:  # nothing sealed: an event without personal fields
        return record["payload"]
    if keyring is None:
        return open_json(record["event_type"], record["payload"], record["event_id"], None)
    wrapped = record["wrapped_key"]
    if wrapped is None:  # the envelope names a key `patient_keys` never had
        raise unknown_key(record["event_id"], record["key_id"])
    key = keyring.data_key(record["key_id"], wrapped, record["kek_id"]) if wrapped else None  # b"": destroyed
    return open_json(record["event_type"], record["payload"], record["event_id"], key)
