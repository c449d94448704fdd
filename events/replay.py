"""Reading the log for audits: a filtered replay in position order, and a consultation's history.

Functions take a connection or pool and return events; the `intake events replay` command and the
history endpoint decide how to show them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg

from events.errors import translating_driver_errors
from events.privacy import Keyring
from events.sqlfiles import queries
from events.store import decode_record
from events.types import StoredEvent

T = TypeVar("T")

BIGINT_MAX = 2**63 - 1
# Rows a replay holds at once: the cursor fetches this many per round trip, whatever the log's size.
REPLAY_BATCH = 1000


def parse_time(text: str) -> dt.datetime:
    """An RFC 3339 time with its offset (`2026-03-01T14:02:00Z`); ValueError otherwise. A time
    without an offset would be read in some machine's zone: refused rather than guessed."""
    if not text.isascii() or len(text) > 40 or "T" not in text.upper():
        raise ValueError("not an RFC 3339 time")
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("an RFC 3339 time needs its offset (Z or ±hh:mm)")
    try:  # 0001-01-01T00:00+14:00 is a valid text but no instant PostgreSQL (or UTC) can hold
        moment.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("a time out of range") from None
    return moment


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a replay shows; every field optional. Times bound `recorded_at`, `since`
    inclusive and `until` exclusive; positions are inclusive at both ends."""

    business_id: int | None = None
    stream_id: str | None = None
    consultation_id: uuid.UUID | None = None
    types: tuple[str, ...] = ()  # "consult.submitted" (any version) or "consult.submitted.v1"
    from_position: int = 0
    to_position: int = BIGINT_MAX
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def arguments(self) -> tuple[object, ...]:
        """The `replay` query's parameters, in order."""
        names = [t for t in self.types if ".v" not in t]
        tags = [t for t in self.types if ".v" in t]
        return (self.from_position, self.to_position, self.business_id, self.stream_id,
                str(self.consultation_id) if self.consultation_id else None,
                names if self.types else None, tags, self.since, self.until)


async def replay(conn: asyncpg.Connection, where: EventFilter, *, batch: int = REPLAY_BATCH,
                 read: Callable[[asyncpg.Record], T]) -> AsyncIterator[T]:
    """Every event that passes the filter, in position order, all from one snapshot of the log,
    through a server-side cursor: memory stays at `batch` rows however long the log. Each row is
    `read` (e.g. decode_record with the keyring: decrypted, decoded and upcast)."""
    with translating_driver_errors():
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            # The reader may wait on a slow pipe between fetches; the pool's idle-in-transaction
            # limit protects the global reader's horizon from stuck writers, and a read-only
            # transaction without an xid does not hold that horizon back.
            await conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
            async for record in conn.cursor(filtered("replay"), *where.arguments(), prefetch=batch):
                yield read(record)


def filtered(name: str) -> str:
    """A replay query of sql/queries/replay.sql with the filter both forms share put in."""
    blocks = queries("replay")
    return blocks[name].replace("/* replay_filter */", blocks["replay_filter"])


async def consultation_history(pool: asyncpg.Pool, keyring: Keyring, business_id: int, consultation_id: uuid.UUID, *,
                               acquire_timeout: float) -> list[StoredEvent]:
    """The events that name a consultation of this business, in log order (none: no such consultation)."""
    with translating_driver_errors():
        async with pool.acquire(timeout=acquire_timeout) as conn:
            records = await conn.fetch(queries("replay")["consultation_history"], str(consultation_id), business_id)
    return [decode_record(r, keyring) for r in records]
