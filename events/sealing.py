"""Appending seals, and reading them back (the store side of events/seals.py).

A seal extends the previous seal's tree from its stored right edge with the events after its
cursor, so its cost is the new events plus log n, never the whole log.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events.merkle import CompactRange, leaf_hash
from events.seals import FIRST_PREVIOUS, Seal, sign
from events.sqlfiles import queries

# Any constant: the same in every intake process, so two sealers at once take turns.
SEAL_LOCK = 7_204_512_012
FETCH_ROWS = 5000
START_CURSOR = ("0", 0)  # before every (tx_id, position)


@dataclass(frozen=True, slots=True)
class StoredSeal:
    """A seal as stored, with where the next one resumes."""

    seal: Seal
    cursor: tuple[str, int]
    right_edge: tuple[bytes, ...]

    def compact_range(self) -> CompactRange:
        """The tree this seal signed, ready to be extended."""
        return CompactRange(self.seal.tree_size, self.right_edge)


def stored_seal(row: asyncpg.Record) -> StoredSeal:
    """A seals row."""
    seal = Seal(row["seal_no"], row["tree_size"], bytes(row["root_hash"]), bytes(row["prev_seal"]),
                row["sealed_at"], row["key_id"], bytes(row["signature"]))
    cursor = (row["last_tx"], row["last_position"]) if row["last_tx"] is not None else START_CURSOR
    return StoredSeal(seal, cursor, tuple(bytes(h) for h in row["right_edge"]))


async def latest_seal(conn: asyncpg.Connection) -> StoredSeal | None:
    """The newest seal, if any."""
    row = await conn.fetchrow(queries("integrity")["latest_seal"])
    return stored_seal(row) if row else None


async def all_seals(conn: asyncpg.Connection) -> list[StoredSeal]:
    """Every seal, in order."""
    return [stored_seal(row) for row in await conn.fetch(queries("integrity")["all_seals"])]


async def seal(conn: asyncpg.Connection, key: Ed25519PrivateKey) -> Seal | None:
    """Append a seal over every event up to the horizon; None when nothing new is there to seal."""
    sql = queries("integrity")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SEAL_LOCK)
        last = await latest_seal(conn)
        compact = last.compact_range() if last else CompactRange()
        cursor = last.cursor if last else START_CURSOR
        newest = None
        async for row in conn.cursor(sql["new_leaves"], *cursor, prefetch=FETCH_ROWS):
            compact.append(leaf_hash(bytes(row["hash"])))
            newest = row
        if newest is None:
            return None
        sealed_at: dt.datetime = await conn.fetchval("SELECT clock_timestamp()")
        made = sign(key, last.seal.seal_no + 1 if last else 1, compact.size, compact.root(),
                    last.seal.seal_hash() if last else FIRST_PREVIOUS, sealed_at)
        await conn.execute(sql["insert_seal"], made.seal_no, made.tree_size, made.root_hash, made.prev_seal,
                           made.sealed_at, made.key_id, made.signature, newest["tx_text"], newest["position"],
                           compact.edge)
    return made


async def rechain_stream(conn: asyncpg.Connection, stream_id: str) -> int:
    """Recompute one stream's hash chain from its stored rows; returns the rows changed.

    For an operator rewrite of stored rows (the one-time re-encryption of old payloads, allowed
    only while no seal exists): call it as the owner, in the transaction that rewrote the stream,
    with events_no_update_delete disabled in that transaction (docs/INTEGRITY.md)."""
    return await conn.fetchval(queries("integrity")["rechain_stream"], stream_id)
