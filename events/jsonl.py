"""`intake events replay --format jsonl`: the log as JSON lines, built by PostgreSQL and streamed
with `COPY … TO STDOUT` (sql/queries/replay.sql: replay_lines), so that the database formats the
next rows while this process writes the last. A row in today's shape with nothing sealed arrives
as its finished line and is written as it came; Python only decrypts sealed personal fields (and
upcasts older shapes), splicing the result between the line's head and tail.

COPY's text format escapes a backslash as two and would escape control characters, newline and tab;
JSON text holds none of those raw, so undoing the doubled backslashes gives the lines back. The
driver hands over whole rows, as many as one read of the socket holds, and reads no more until its
sink returns: memory stays at about two BATCHes of rows (each read, then converted) and KEY_CACHE
keys however long the log.

The data keys come from a second connection in the COPY's own snapshot (exported, then imported),
asked once per batch for the keys its rows name that are not cached: what event_rows would have
joined to each row, as of the same moment, without probing `patient_keys` once per sealed row. A
batch is converted only once the next one has been taken and its keys asked for, so that round trip
(and PostgreSQL's work on it) runs while this process converts, instead of between batches.
"""

from __future__ import annotations

import asyncio
import collections
import re
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import asyncpg
import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from events.codec import CURRENT_TYPES, decode_payload
from events.errors import translating_driver_errors
from events.privacy import PERSONAL_FIELDS, Keyring, open_parts, unknown_key
from events.replay import EventFilter, filtered
from events.sqlfiles import queries

BATCH = 1 << 20  # bytes of rows converted and written at once
KEY_CACHE = 4096  # unwrapped data keys kept, least recently used out first (docs/PRIVACY.md: their bytes)
_CURRENT_TAGS = sorted(f"{name}.v{version}" for name, version in CURRENT_TYPES)
_MARK, _PARTS = b"\x1e", b"\x1f"  # a row to convert; between its parts
_ENCODER = msgspec.json.Encoder()
_KEY_ID = 5  # index of the key id among a row's parts
_CURRENT_PARTS = frozenset((name.encode(), str(version).encode()) for name, version in CURRENT_TYPES)
_FIELDS = {name.encode(): fields for name, fields in PERSONAL_FIELDS.items()}  # by the type as a row spells it
_UNKNOWN = object()  # a key `patient_keys` never had
_MISSING = object()  # not cached
Key = AESGCM | object | None  # None: destroyed (reads ERASED); _UNKNOWN
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
                snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
                lines = _Lines(_Keys(connect, snapshot, keyring), write)
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
    """The data keys of one snapshot: read on a connection of their own, unwrapped, the KEY_CACHE
    used last kept (least recently used out first). Requests run one after another, each while the
    batch before it is converted: the round trip is off the replay's path."""

    def __init__(self, connect: Connect, snapshot: str, keyring: Keyring) -> None:
        if not _SNAPSHOT_ID.fullmatch(snapshot):
            raise ValueError(f"unexpected snapshot id {snapshot!r}")
        self._connect, self._snapshot, self._keyring = connect, snapshot, keyring
        self._conn: asyncpg.Connection | None = None
        self._cached: collections.OrderedDict[bytes, Key] = collections.OrderedDict()
        self._last: asyncio.Task[dict[bytes, Key]] | None = None

    def request(self, needed: set[bytes]) -> asyncio.Task[dict[bytes, Key]]:
        """Start finding the keys of `needed` (their ids as the payloads spell them): a task giving
        each one, run once the requests before it are done (one statement at a time on one connection)."""
        self._last = task = asyncio.ensure_future(self._find(needed, self._last))
        return task

    async def _find(self, needed: set[bytes], before: asyncio.Task[dict[bytes, Key]] | None) -> dict[bytes, Key]:
        if before is not None:
            await before  # its keys are cached now: not asked for twice
        found, cached = {}, self._cached
        for key_id in needed:
            key = cached.get(key_id, _MISSING)
            if key is not _MISSING:
                cached.move_to_end(key_id)
                found[key_id] = key
        missing = needed - found.keys()
        if missing:
            found.update(fetched := await self._fetch(missing))
            cached.update(fetched)
            for _ in range(len(cached) - KEY_CACHE):
                cached.popitem(last=False)
        return found

    async def _fetch(self, missing: set[bytes]) -> dict[bytes, Key]:
        rows = await (await self._connection()).fetch(queries("replay")["data_keys"], [k.decode() for k in missing])
        unwrap = self._keyring.unwrap  # not Keyring's own cache: this one is the bound
        found: dict[bytes, Key] = dict.fromkeys(missing, _UNKNOWN)
        found.update((row["wanted"].encode(), unwrap(row["key_id"], row["wrapped_key"], row["kek_id"])
                      if row["wrapped_key"] else None) for row in rows)  # b"": destroyed
        return found

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None:
            self._conn = conn = await self._connect()
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            await conn.execute(f"SET TRANSACTION SNAPSHOT '{self._snapshot}'")
        return self._conn

    async def close(self) -> None:
        """Stop a request still running (the replay failed) and close the connection."""
        if self._last is not None:
            self._last.cancel()  # cancels the requests it waits for too
            await asyncio.gather(self._last, return_exceptions=True)
        if self._conn is not None:
            await self._conn.close()


class _Batch(NamedTuple):
    """Rows taken from COPY, the marked ones found, and the request for the keys they name."""

    chunks: list[bytes]
    marked: list[list[tuple[int, int, list[bytes]]]]
    keys: asyncio.Task[dict[bytes, Key]]


class _Lines:
    """Turns COPY's rows into the replay's lines, BATCH bytes of rows at a time. The keys of a batch
    are asked for in one round trip as soon as it is taken, and it is converted once the next one is
    taken, so PostgreSQL finds those keys while this process converts the batch before. Rows in their
    final form are never split or copied here: only the marked ones are cut out, converted and
    joined back between them."""

    def __init__(self, keys: _Keys, write: Callable[[bytes], object]) -> None:
        self.keys, self._write = keys, write
        self._pending: list[bytes] = []
        self._size = 0
        self._taken: _Batch | None = None  # its keys on their way

    async def take(self, chunk: bytes | bytearray) -> None:
        """COPY's sink: whole rows, each ending in a newline."""
        if b"\\" in chunk:
            chunk = chunk.replace(b"\\\\", b"\\")
        self._pending.append(chunk)
        self._size += len(chunk)
        if self._size >= BATCH:
            await self._next_batch()

    async def flush(self) -> None:
        """Convert and write the rows taken so far."""
        if self._pending:
            await self._next_batch()
        if self._taken is not None:
            await self._convert(self._taken)
            self._taken = None

    async def _next_batch(self) -> None:
        chunks, self._pending, self._size = self._pending, [], 0
        marked = [_marked_rows(chunk) for chunk in chunks]
        keys = self.keys.request({parts[_KEY_ID] for rows in marked for _, _, parts in rows if parts[_KEY_ID]})
        previous, self._taken = self._taken, _Batch(chunks, marked, keys)
        await asyncio.sleep(0)  # the request is sent before the conversion holds the loop
        if previous is not None:
            await self._convert(previous)

    async def _convert(self, batch: _Batch) -> None:
        keys = await batch.keys
        pieces: list[bytes | memoryview] = []
        for chunk, rows in zip(batch.chunks, batch.marked, strict=True):
            view, done = memoryview(chunk), 0
            for start, end, (head, tail, event_type, version, event_id, key_id, ciphertext, data) in rows:
                if key_id:
                    if (key := keys[key_id]) is _UNKNOWN:
                        raise unknown_key(event_id.decode(), key_id.decode())
                    data = open_parts(_FIELDS.get(event_type, ()), data, ciphertext, event_id, key_id, key)
                if (event_type, version) not in _CURRENT_PARTS:  # an older shape: through the upcasters
                    data = _ENCODER.encode(decode_payload(event_type.decode(), int(version), data))
                pieces += (view[done:start], head, data, tail)
                done = end  # the row's newline starts the next piece
            pieces.append(view[done:])
        try:
            self._write(b"".join(pieces))
        except OSError as error:
            raise _WriteFailed from error


def _marked_rows(chunk: bytes | bytearray) -> list[tuple[int, int, list[bytes]]]:
    """The rows of a chunk that start with the mark: where each starts and ends (its newline), and its
    parts, as bytes (the driver's chunk is a bytearray: parts are looked up by value, and one copy of
    the row costs less than copying the whole chunk)."""
    rows, view = [], memoryview(chunk)
    start = chunk.find(_MARK)  # only ever the first byte of a row
    while start >= 0:
        end = chunk.index(b"\n", start)
        rows.append((start, end, bytes(view[start + 1:end]).split(_PARTS, 7)))
        start = chunk.find(_MARK, end)
    return rows
