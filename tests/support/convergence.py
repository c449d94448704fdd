"""Waiting, with a deadline, until the read tables equal a fresh fold of the log; and saying why
not when they don't, with keys and column names only, never row values (patient data)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest

from events.privacy import Keyring
from projections.floors import survey
from projections.projector import PROJECTIONS
from tests.support.fold import actual_tables, expected_tables
from tests.support.workers import WorkerProcess

SAMPLE = 3  # differing keys shown per table in a failure message


async def wait_until_converged(db: asyncpg.Connection, keyring: Keyring, workers: list[WorkerProcess], *,
                               deadline_s: float, poll_s: float) -> tuple[float, float]:
    """Poll until the outbox is empty and the read tables equal a fresh fold of the log.

    Returns the seconds until the outbox was empty and until the tables matched.
    """
    started = time.monotonic()
    relayed_s = None
    while True:
        if await db.fetchval("SELECT count(*) FROM outbox") == 0:
            relayed_s = time.monotonic() - started if relayed_s is None else relayed_s
            async with db.transaction(isolation="repeatable_read"):  # both sides from one snapshot
                expected, actual = await expected_tables(db, keyring), await actual_tables(db)
            if expected == actual:
                return relayed_s, time.monotonic() - started
        if time.monotonic() - started > deadline_s:
            diff = divergence(await expected_tables(db, keyring), await actual_tables(db))
            logs = "\n".join(f"--- worker {n} log ends:\n{w.log_tail(1500)}" for n, w in enumerate(workers))
            pytest.fail(f"no convergence within {deadline_s:g}s\n{await projection_state(db)}\n{diff}\n{logs}")
        await asyncio.sleep(poll_s)


async def projection_state(db: asyncpg.Connection) -> str:
    """Outbox, failures and lag: what to look at first when the read side is stuck."""
    outbox = await db.fetchrow("SELECT count(*) AS n, max(attempts) AS attempts, "
                               "extract(epoch FROM max(available_at) - now())::float8 AS due_s FROM outbox")
    failures = await db.fetch("SELECT projection, stream_id, error, attempts, parked FROM projection_failures "
                              "ORDER BY failed_at DESC LIMIT 5")
    lagging, _ = await survey(db, list(PROJECTIONS))
    return (f"outbox: {outbox['n']} rows (max attempts {outbox['attempts']}, last one due in {outbox['due_s']}s); "
            f"streams some projection lags on: {len(lagging)}; failures: {[dict(f) for f in failures]}")


def divergence(expected: dict[str, dict[Any, Any]], actual: dict[str, dict[Any, Any]]) -> str:
    """Counts and a few keys per table; keys and column names only, never row values (patient data)."""
    lines = []
    for table, want in expected.items():
        have = actual[table]
        missing = [k for k in want if k not in have]
        extra = [k for k in have if k not in want]
        differing = [k for k in want.keys() & have.keys() if want[k] != have[k]]
        columns = sorted({c for k in differing for c in want[k] if want[k][c] != have[k].get(c)})
        lines.append(f"{table}: expected {len(want)} rows, found {len(have)}; missing {len(missing)} "
                     f"{missing[:SAMPLE]}; extra {len(extra)} {extra[:SAMPLE]}; differing {len(differing)} "
                     f"{differing[:SAMPLE]} in columns {columns}")
    return "\n".join(lines)
