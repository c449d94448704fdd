"""Building proofs from the log (events/proofs.py checks them).

A proof's tree is rebuilt from the stored hashes of the seal's first tree_size events: one ordered
index scan, O(n) in the log (docs/INTEGRITY.md: what storing the tree's nodes would buy).
"""

from __future__ import annotations

import asyncpg

from events.chain import ZERO_HASH, micros
from events.merkle import consistency_path, inclusion_path, leaf_hash
from events.proofs import ConsistencyProof, InclusionProof, ProvenEvent
from events.sealing import FETCH_ROWS, StoredSeal, all_seals, latest_seal
from events.seals import to_line
from events.sqlfiles import queries


class NotProvable(LookupError):
    """No such event, or it is not under a seal yet, or no seal has that tree size."""


async def _leaves(conn: asyncpg.Connection, size: int) -> list[bytes]:
    return [leaf_hash(bytes(row["hash"]))
            async for row in conn.cursor(queries("integrity")["first_leaves"], size, prefetch=FETCH_ROWS)]


async def inclusion_proof(conn: asyncpg.Connection, position: int) -> InclusionProof:
    """The proof that the event at `position` is under the newest seal."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        row = await conn.fetchrow(queries("integrity")["event_for_proof"], position)
        if row is None:
            raise NotProvable(f"there is no event at position {position}")
        newest = await latest_seal(conn)
        if newest is None or row["leaf_index"] >= newest.seal.tree_size:
            raise NotProvable(f"the event at position {position} is not sealed yet")
        leaves = await _leaves(conn, newest.seal.tree_size)
    fingerprint = row["request_fingerprint"]
    event = ProvenEvent(row["position"], row["event_id"], row["stream_id"], row["stream_version"],
                        row["event_type"], row["schema_version"], row["business_id"], row["idempotency_key"],
                        None if fingerprint is None else bytes(fingerprint).hex(), row["payload"], row["metadata"],
                        micros(row["recorded_at"]))
    previous = bytes(row["prev_hash"]) if row["prev_hash"] is not None else ZERO_HASH
    return InclusionProof(event, previous.hex(), bytes(row["hash"]).hex(), row["leaf_index"],
                          [h.hex() for h in inclusion_path(leaves, row["leaf_index"])], to_line(newest.seal))


async def consistency_proof(conn: asyncpg.Connection, old_size: int, new_size: int) -> ConsistencyProof:
    """The proof that the seal of `old_size` events is a prefix of the seal of `new_size`."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        by_size: dict[int, StoredSeal] = {s.seal.tree_size: s for s in await all_seals(conn)}
        missing = [size for size in (old_size, new_size) if size not in by_size]
        if missing or old_size > new_size:
            raise NotProvable(f"no seal has a tree of {missing[0]} events" if missing
                              else "the old size is larger than the new one")
        leaves = await _leaves(conn, new_size)
    path = consistency_path(leaves, old_size)
    return ConsistencyProof(to_line(by_size[old_size].seal), to_line(by_size[new_size].seal),
                            [h.hex() for h in path])
