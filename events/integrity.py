"""`intake events verify`'s work: recompute every stream's chain and the tree under every seal from
the stored rows, and check the seals' signatures and links (docs/INTEGRITY.md).

Nothing the database computes is trusted: whoever can edit rows can redefine a function. The scan
reads the log once, in the seals' (tx_id, position) order, in one REPEATABLE READ snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from events.log_scan import ChainScan, Problem, stream_key
from events.merkle import CompactRange
from events.sealing import FETCH_ROWS, START_CURSOR, StoredSeal, all_seals
from events.seals import FIRST_PREVIOUS, Seal, signed_by
from events.sqlfiles import queries

Progress = Callable[[int, int], None]


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
        seeds = await _sealed_predecessors(conn, start) if start else {}
        scan = ChainScan(later + [c for c in copies if c.seal_no not in {s.seal.seal_no for s in stored}], compact,
                         seeds)
        total = await conn.fetchval(queries("integrity")["count_events"])
        if problem := await _scan_log(conn, scan, start, total, progress):
            report.problems.append(problem)
    report.events, report.streams = scan.events + (start.seal.tree_size if start else 0), len(scan.heads)
    return report


async def _scan_log(conn: asyncpg.Connection, scan: ChainScan, start: StoredSeal | None, total: int,
                    progress: Progress | None) -> Problem | None:
    """Every event after the start, as one binary COPY (events/log_scan.py); the first problem. The
    server reads and sends rows while this process hashes the ones it has (two cores at work)."""
    cursor, shown = start.cursor if start else START_CURSOR, [FETCH_ROWS]

    async def check(piece: bytes) -> None:
        scan.feed(piece)
        if progress and scan.events >= shown[0]:  # a log that fits one batch needs no progress line
            progress(scan.events, total)
            shown[0] = scan.events + FETCH_ROWS

    # After a problem, the rest of the stream is read and dropped: cancelling a COPY mid-way would
    # leave the transaction failed, and a broken log is the rare case.
    await conn.copy_from_query(_sql("scan_events"), *cursor, output=check, format="binary")
    return scan.finish()


async def _sealed_predecessors(conn: asyncpg.Connection, start: StoredSeal) -> dict[bytes, tuple[int, bytes]]:
    """--from-seal: the stored hash each stream's first event after the seal chains onto."""
    rows = await conn.fetch(_sql("sealed_predecessors"), *start.cursor)
    return {stream_key(row["stream_id"]): (row["stream_version"], bytes(row["hash"])) for row in rows}


def _sql(name: str) -> str:
    return queries("integrity")[name].strip().rstrip(";")


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
