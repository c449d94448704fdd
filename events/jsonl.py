"""`intake events replay --format jsonl`: the log as JSON lines, built by PostgreSQL and streamed
with `COPY … TO STDOUT` (sql/queries/replay.sql: replay_lines), so that the database formats the
next rows while this process writes the last. A row in today's shape with nothing sealed arrives
as its finished line and is written as it came; Python only decrypts sealed personal fields (and
upcasts older shapes), splicing the result between the line's head and tail.

COPY's text format escapes a backslash as two and would escape control characters, newline and tab;
JSON text holds none of those raw, so undoing the doubled backslashes gives the lines back. The
driver hands over whole rows, as many as one read of the socket holds, and reads no more until its
sink returns: memory stays at about BATCH bytes of rows (twice: read, then converted) and KEY_CACHE
keys however long the log.

The data keys come from a second connection in the COPY's own snapshot (exported, then imported),
asked once per batch for the keys its rows name that are not cached: what event_rows would have
joined to each row, as of the same moment, without probing `patient_keys` once per sealed row.
"""

from __future__ import annotations

import binascii
import re
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from events.codec import CURRENT_TYPES, decode_payload
from events.errors import translating_driver_errors
from events.privacy import Keyring, open_parts, unknown_key
from events.replay import EventFilter, filtered
from events.sqlfiles import queries

BATCH = 1 << 20  # bytes of rows converted and written at once
KEY_CACHE = 4096  # unwrapped data keys held at once (a patient's events sit close together in the log)
_CURRENT_TAGS = sorted(f"{name}.v{version}" for name, version in CURRENT_TYPES)
_MARK, _PARTS = b"\x1e", b"\x1f"  # a row to convert; between its parts
_ENCODER = msgspec.json.Encoder()
_KEY_ID = 5  # index of the key id among a row's parts
_UNKNOWN = object()  # a key `patient_keys` never had
_SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+(-[0-9]+)?")
Connect = Callable[[], Awaitable[asyncpg.Connection]]


async def replay_jsonl(conn: asyncpg.Connection, connect: Connect, where: EventFilter, keyring: Keyring,
                       write: Callable[[bytes], object]) -> None:
    """Every event that passes the filter, in position order, as JSON lines given to `write` in
    chunks; one snapshot of the log. `connect` opens the connection the data keys are read on, if
    any row is sealed. An error of `write` (a reader gone) ends it."""
    try:
        with translating_driver_errors():
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                # The reader paces the statement (a slow pipe, `| less`): no limit on how long it runs.
                await conn.execute("SET LOCAL statement_timeout = 0")
                lines = _Lines(keyring, _Keys(connect, await conn.fetchval("SELECT pg_export_snapshot()")), write)
                try:
                    await conn.copy_from_query(filtered("replay_lines").rstrip(";"), *where.arguments(),
                                               _CURRENT_TAGS, output=lines.take)
                    await lines.flush()
                finally:
                    await lines.keys.close()
    except _WriteFailed as failed:
        raise failed.__cause__ from None  # the writer's own error (BrokenPipeError: the reader left), not the store's


class _WriteFailed(Exception):
    """The writer failed: carried out of the driver's error translation as its cause."""


class _Keys:
    """The data keys of one snapshot: read on a connection of their own, unwrapped, bounded."""

    def __init__(self, connect: Connect, snapshot: str) -> None:
        if not _SNAPSHOT_ID.fullmatch(snapshot):
            raise ValueError(f"unexpected snapshot id {snapshot!r}")
        self._connect, self._snapshot = connect, snapshot
        self._conn: asyncpg.Connection | None = None
        self.cached: dict[bytes, AESGCM | object | None] = {}  # None: destroyed (reads ERASED)

    async def load(self, needed: set[bytes], keyring: Keyring) -> None:
        """Have every key of `needed` (their ids as the payloads spell them) in `cached`."""
        missing = needed - self.cached.keys()
        if not missing:
            return
        if len(self.cached) + len(missing) > KEY_CACHE:
            self.cached.clear()
            missing = needed
        ids = {key_id: uuid.UUID(key_id.decode()) for key_id in missing}
        rows = await (await self._connection()).fetch(queries("replay")["data_keys"], list(set(ids.values())))
        found = {row["key_id"]: keyring.data_key(row["key_id"], row["wrapped_key"], row["kek_id"])
                 if row["wrapped_key"] else None for row in rows}  # b"": destroyed
        self.cached.update((key_id, found.get(id_, _UNKNOWN)) for key_id, id_ in ids.items())

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None:
            self._conn = conn = await self._connect()
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            await conn.execute(f"SET TRANSACTION SNAPSHOT '{self._snapshot}'")
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


class _Lines:
    """Turns COPY's rows into the replay's lines, BATCH bytes of rows at a time (the keys a batch
    needs are asked for in one round trip). Rows in their final form are never split or copied
    here: only the marked ones are cut out, converted and joined back between them."""

    def __init__(self, keyring: Keyring, keys: _Keys, write: Callable[[bytes], object]) -> None:
        self.keys, self._keyring, self._write = keys, keyring, write
        self._pending: list[bytes] = []
        self._size = 0

    async def take(self, chunk: bytes) -> None:
        """COPY's sink: whole rows, each ending in a newline."""
        if b"\\" in chunk:
            chunk = chunk.replace(b"\\\\", b"\\")
        self._pending.append(chunk)
        self._size += len(chunk)
        if self._size >= BATCH:
            await self.flush()

    async def flush(self) -> None:
        """Convert and write the rows taken so far."""
        if not self._pending:
            return
        chunks, self._pending, self._size = self._pending, [], 0
        marked = [(chunk, _marked_rows(chunk)) for chunk in chunks]
        await self.keys.load({bytes(parts[_KEY_ID]) for _, rows in marked for _, _, parts in rows if parts[_KEY_ID]},
                             self._keyring)
        pieces: list[bytes | memoryview] = []
        for chunk, rows in marked:
            view, done = memoryview(chunk), 0
            for start, end, (head, tail, event_type, version, event_id, key_id, ciphertext, payload) in rows:
                data = self._data(event_type.decode(), int(version), payload, event_id, bytes(key_id), ciphertext)
                pieces += (view[done:start], head, data, tail)
                done = end  # the row's newline starts the next piece
            pieces.append(view[done:])
        try:
            self._write(b"".join(pieces))
        except OSError as error:
            raise _WriteFailed from error

    def _data(self, event_type: str, version: int, payload: bytes, event_id: bytes, key_id: bytes,
              ciphertext: bytes) -> bytes:
        """The line's data: the payload as written before sealing, in today's shape."""
        if key_id:
            key = self.keys.cached[key_id]
            if not (key is None or isinstance(key, AESGCM)):
                raise unknown_key(bytes(event_id).decode(), key_id.decode())
            payload = open_parts(event_type, payload, ciphertext, _uuid_bytes(event_id), _uuid_bytes(key_id), key)
        if (event_type, version) in CURRENT_TYPES:
            return payload
        return _ENCODER.encode(decode_payload(event_type, version, payload))


def _marked_rows(chunk: bytes) -> list[tuple[int, int, list[bytes]]]:
    """The rows of a chunk that start with the mark: where each starts and ends (its newline), and its parts."""
    rows = []
    start = chunk.find(_MARK)  # only ever the first byte of a row
    while start >= 0:
        end = chunk.index(b"\n", start)
        rows.append((start, end, chunk[start + 1:end].split(_PARTS, 7)))
        start = chunk.find(_MARK, end)
    return rows


def _uuid_bytes(text: bytes) -> bytes:
    return binascii.unhexlify(text.replace(b"-", b""))
