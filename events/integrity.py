"""`intake events verify`'s work: recompute every stream's chain and the tree under every seal from
the stored rows, and check the seals' signatures and links (docs/INTEGRITY.md).

Nothing the database computes is trusted: whoever can edit rows can redefine a function. The scan
reads the log once, in the seals' (tx_id, position) order, in one REPEATABLE READ snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from events.chain import ZERO_HASH, canonical_of, link
from events.merkle import CompactRange, leaf_hash
from events.sealing import FETCH_ROWS, START_CURSOR, StoredSeal, all_seals
from events.seals import FIRST_PREVIOUS, Seal, signed_by
from events.sqlfiles import queries

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing found wrong: where (a position or a seal), what kind, and how we know."""

    where: str
    kind: str  # edited, missing, reordered, inserted, bad signature, differs from copy
    detail: str

    def line(self) -> str:
        return f"{self.where}: {self.kind}: {self.detail}"


@dataclass(slots=True)
class Report:
    """What verify saw."""

    events: int = 0
    streams: int = 0
    seals: int = 0
    sealed: int = 0  # events under the newest seal
    problems: list[Problem] = field(default_factory=list)

    @property
    def unsealed(self) -> int:
        return max(self.events - self.sealed, 0)


def check_seal_chain(seals: Sequence[Seal], key: Ed25519PublicKey, first_previous: bytes = FIRST_PREVIOUS,
                     first_no: int = 1) -> list[Problem]:
    """Signatures, numbering, links to the previous seal, growing sizes."""
    problems: list[Problem] = []
    previous, number, size = first_previous, first_no, -1
    for seal in seals:
        where = f"seal {seal.seal_no}"
        if seal.seal_no != number:
            problems.append(Problem(f"seal {number}", "missing", f"the next seal is number {seal.seal_no}"))
        if not signed_by(seal, key):
            problems.append(Problem(where, "bad signature",
                                    "its signature does not verify with the configured key (edited, or signed by "
                                    "another key)"))
        if seal.prev_seal != previous:
            problems.append(Problem(where, "edited", "it does not name the previous seal's hash (a seal before it "
                                                     "was edited, replaced or removed)"))
        if seal.tree_size <= size:
            problems.append(Problem(where, "edited", f"its tree ({seal.tree_size} events) does not grow"))
        previous, number, size = seal.seal_hash(), seal.seal_no + 1, seal.tree_size
    return problems


def compare_with_copies(stored: Sequence[Seal], copies: Sequence[Seal], key: Ed25519PublicKey) -> list[Problem]:
    """An exported copy must be in the database, byte for byte (catches a rewrite of everything)."""
    by_number = {seal.seal_no: seal for seal in stored}
    problems = []
    for copy in copies:
        where = f"seal {copy.seal_no}"
        if not signed_by(copy, key):
            problems.append(Problem(where, "bad signature", "the exported copy's signature does not verify"))
        elif copy.seal_no not in by_number:
            problems.append(Problem(where, "missing", "the exported copy has it, the database does not"))
        elif by_number[copy.seal_no] != copy:
            problems.append(Problem(where, "differs from copy",
                                    "the database's seal is not the exported one (the log was rewritten)"))
    return problems


class _Scan:
    """The one pass over the log: chains per stream, the tree, and each seal's root as it is reached."""

    def __init__(self, conn: asyncpg.Connection, seals: Sequence[Seal], compact: CompactRange, incremental: bool):
        self.conn, self.compact, self.incremental = conn, compact, incremental
        self.pending = sorted((s for s in seals if s.tree_size > compact.size), key=lambda s: s.tree_size)
        self.heads: dict[str, tuple[int, bytes]] = {}
        self.events = 0

    async def sealed_predecessor(self, row: asyncpg.Record) -> None:
        """--from-seal: a stream whose earlier events are under the starting seal chains onto the stored
        hash of its previous event (the starting seal vouches for it)."""
        stream, version = row[4], row[5]
        if self.incremental and version > 1 and stream not in self.heads:
            prev = await self.conn.fetchval(queries("integrity")["previous_hash"], stream, version - 1)
            if prev is not None:
                self.heads[stream] = (version - 1, bytes(prev))

    def row(self, row: asyncpg.Record) -> Problem | None:
        """One event, its columns in scan_events' order (by index: this runs once per event)."""
        self.events += 1
        where = f"position {row[0]}"
        stream, version = row[4], row[5]
        head = self.heads.get(stream)
        expected = head[0] + 1 if head else 1
        if version < expected:
            return Problem(where, "reordered", f"stream {stream} version {version} comes after version {expected - 1}")
        if version > expected:
            return Problem(where, "missing", f"stream {stream} version {version} follows version {expected - 1}: "
                                             "the events between are not in the log")
        fingerprint = row[10]
        computed = link(head[1] if head else ZERO_HASH, canonical_of(
            row[3], stream, version, row[6], row[7], row[8], row[9], None if fingerprint is None else bytes(fingerprint),
            row[11], row[12], row[13]))
        if computed != row[2]:
            return Problem(where, "edited", f"stream {stream} version {version}: its contents or its chain do not "
                                            "match its stored hash")
        self.heads[stream] = (version, computed)
        self.compact.append(leaf_hash(computed))
        return self.reached_seal(row[0])

    def reached_seal(self, position: int) -> Problem | None:
        if not self.pending or self.pending[0].tree_size != self.compact.size:
            return None
        seal = self.pending.pop(0)
        if self.compact.root() != seal.root_hash:
            return Problem(f"seal {seal.seal_no}", "edited",
                           f"the log's first {seal.tree_size} events (up to position {position}) do not hash to its "
                           "root: an event among them was edited, inserted, deleted or reordered")
        return None

    def unreached(self) -> Problem | None:
        if not self.pending:
            return None
        seal = self.pending[0]
        return Problem(f"seal {seal.seal_no}", "missing",
                       f"it covers {seal.tree_size} events but the log has {self.compact.size}: events were deleted")


async def verify(conn: asyncpg.Connection, key: Ed25519PublicKey, *, from_seal: int | None = None,
                 copies: Sequence[Seal] = (), progress: Progress | None = None) -> Report:
    """Check the log, from the first event or from seal `from_seal` on; the first problem ends the scan."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        stored = await all_seals(conn)
        start = _starting_seal(stored, from_seal)
        later = [s.seal for s in stored if start is None or s.seal.seal_no > start.seal.seal_no]
        report = Report(seals=len(stored), sealed=stored[-1].seal.tree_size if stored else 0)
        report.problems += _start_problems(start, later, key)
        report.problems += compare_with_copies([s.seal for s in stored], copies, key)
        compact = start.compact_range() if start else CompactRange()
        scan = _Scan(conn, later + [c for c in copies if c.seal_no not in {s.seal.seal_no for s in stored}],
                     compact, incremental=start is not None)
        total = await conn.fetchval(queries("integrity")["count_events"])
        if problem := await _scan_log(scan, start, total, progress):
            report.problems.append(problem)
    report.events, report.streams = scan.events + (start.seal.tree_size if start else 0), len(scan.heads)
    return report


async def _scan_log(scan: _Scan, start: StoredSeal | None, total: int, progress: Progress | None) -> Problem | None:
    """Every event after the start, then the seals the log did not reach; the first problem."""
    # From a seal, a row may need a lookup on this connection, so no fetch may be in flight then.
    batches = _batches(scan.conn, start.cursor if start else START_CURSOR, ahead=start is None)
    async with contextlib.aclosing(batches):
        async for batch in batches:
            for row in batch:
                if start is not None:
                    await scan.sealed_predecessor(row)
                if problem := scan.row(row):
                    return problem
            if progress and len(batch) == FETCH_ROWS:  # a log that fits one batch needs no progress line
                progress(scan.events, total)
    return scan.unreached()


async def _batches(conn: asyncpg.Connection, cursor: tuple[str, int], *, ahead: bool) -> AsyncIterator[list[Any]]:
    """scan_events, FETCH_ROWS at a time. With `ahead`, the next batch is asked for before this one is
    handed out, so the server reads it while we hash (verify's two halves on two cores)."""
    rows = await conn.cursor(queries("integrity")["scan_events"], *cursor)
    batch = await rows.fetch(FETCH_ROWS)
    following: asyncio.Future[list[Any]] | None = None
    try:
        while batch:
            if not ahead:
                yield batch
                batch = await rows.fetch(FETCH_ROWS)
                continue
            following = asyncio.ensure_future(rows.fetch(FETCH_ROWS))
            await asyncio.sleep(0)  # one turn of the loop: the request goes out before we start hashing
            yield batch
            batch = await following
    finally:
        if following is not None and not following.done():  # left early: the connection must be idle again
            await following


def _starting_seal(stored: Sequence[StoredSeal], from_seal: int | None) -> StoredSeal | None:
    if from_seal is None:
        return None
    for candidate in stored:
        if candidate.seal.seal_no == from_seal:
            return candidate
    raise LookupError(f"there is no seal {from_seal}")


def _start_problems(start: StoredSeal | None, later: Sequence[Seal], key: Ed25519PublicKey) -> list[Problem]:
    if start is None:
        return check_seal_chain(later, key)
    problems = check_seal_chain([start.seal], key, start.seal.prev_seal, start.seal.seal_no)
    if start.compact_range().root() != start.seal.root_hash:
        problems.append(Problem(f"seal {start.seal.seal_no}", "edited", "its stored right edge is not its tree"))
    return problems + check_seal_chain(later, key, start.seal.seal_hash(), start.seal.seal_no + 1)
