"""The read models as they stood at a time, folded from the log with the projections' own
`key`/`evolve`: the events whose transactions had committed at that time, and no others.

"Committed at TIME" is decided by PostgreSQL's commit timestamps (`track_commit_timestamp`),
not by `recorded_at`: that is the transaction's start, and a transaction that started before
TIME may commit after it. docs/ARCHITECTURE.md ("As of a time") gives the whole argument.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import asyncpg
import msgspec

from events.errors import translating_driver_errors
from events.privacy import Keyring
from events.sqlfiles import queries
from events.store import decode_record
from events.types import StoredEvent
from projections import approvals, consultations, patients
from projections.queries import ConsultationView, consultation_view

MODELS = (patients, consultations, approvals)
Tables = dict[str, dict[Any, Any]]
# Rows whose commit time PostgreSQL no longer knows count by `recorded_at`, their transaction's
# start. Appends are one statement and a commit under statement_timeout and
# idle_in_transaction_session_timeout (seconds), so such a transaction ended within this of its
# start; a TIME closer than this after one of them is refused, not guessed.
UNKNOWN_COMMIT_WINDOW = dt.timedelta(hours=1)
SETTLE_TIMEOUT_S = 10.0
_POLL_S = 0.02


class CommitTimesUntracked(Exception):
    """PostgreSQL runs with track_commit_timestamp off, so it cannot say which events had committed
    at a time: set track_commit_timestamp = on and restart PostgreSQL."""


class AsOfInFuture(Exception):
    """The time is later than now: what will have committed by then is not known yet."""


class TransactionsStillOpen(Exception):
    """Transactions that may have committed by that time are still finishing; try again."""


class CommitTimeUnknown(Exception):
    """PostgreSQL no longer knows when some events near that time committed (their transactions
    are older than its commit-timestamp horizon, or committed while tracking was off)."""


def empty() -> Tables:
    """No rows in any read model."""
    return {model.NAME: {} for model in MODELS}


def apply(tables: Tables, event: StoredEvent, models: tuple[Any, ...] = MODELS) -> None:
    """Evolve every read model's row that the event is about."""
    for model in models:
        rows = tables[model.NAME]
        if (key := model.key(event)) is not None and (row := model.evolve(rows.get(key), event)) is not None:
            rows[key] = row


def fold(events: Iterable[StoredEvent]) -> Tables:
    """The read models after these events, given in log order."""
    tables = empty()
    for event in events:
        apply(tables, event)
    return tables


def committed_by(at: dt.datetime, committed_at: dt.datetime | None, recorded_at: dt.datetime) -> bool:
    """Whether an event's transaction had committed at `at` (its start, `recorded_at`, is ≤ `at`)."""
    if committed_at is not None:
        return committed_at <= at
    if recorded_at > at - UNKNOWN_COMMIT_WINDOW:
        raise CommitTimeUnknown(CommitTimeUnknown.__doc__)
    return True


async def tables_as_of(conn: asyncpg.Connection, keyring: Keyring, at: dt.datetime, *, business_id: int | None = None,
                       consultation_id: uuid.UUID | None = None) -> Tables:
    """Patients, consultations and approvals at `at`: of one business, or of one consultation
    (with its patient, whose details follow every submission of theirs by then)."""
    await _settle(conn.fetchval, at)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        tables = empty()
        async for event in _committed(conn, keyring, at, business_id, consultation_id=consultation_id):
            apply(tables, event)
        if consultation_id is not None:
            tables[patients.NAME] = {}
            for row in list(tables[consultations.NAME].values()):
                async for event in _committed(conn, keyring, at, row.business_id, patient_id=row.patient_id):
                    apply(tables, event, (patients,))
    return tables


async def consultation_as_of(pool: asyncpg.Pool, keyring: Keyring, business_id: int, consultation_id: uuid.UUID,
                             at: dt.datetime, *, acquire_timeout: float) -> ConsultationView | None:
    """One consultation of this business as it stood at `at`; None if it did not exist yet."""

    async def fetchval(sql: str, *args: Any) -> Any:  # a connection per question: none is held while waiting
        async with pool.acquire(timeout=acquire_timeout) as conn:
            return await conn.fetchval(sql, *args)

    with translating_driver_errors():
        await _settle(fetchval, at)
        async with pool.acquire(timeout=acquire_timeout) as conn:
            row = None
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                async for event in _committed(conn, keyring, at, business_id, consultation_id=consultation_id):
                    if consultations.key(event) == consultation_id:
                        row = consultations.evolve(row, event)
    return None if row is None else view(row)


def view(row: consultations.ConsultationRow) -> ConsultationView:
    """A consultation row as the read API shows it (times in UTC, as PostgreSQL gives them)."""
    fields = msgspec.structs.asdict(row)
    return consultation_view({**fields, "submitted_at": _utc(row.submitted_at), "decided_at": _utc(row.decided_at),
                              "consent_accepted_at": _utc(row.consent_accepted_at),
                              "partner_status_at": _utc(row.partner_status_at)})


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    return moment.astimezone(dt.UTC) if moment is not None else None


async def _settle(fetchval: Callable[..., Awaitable[Any]], at: dt.datetime, timeout_s: float = SETTLE_TIMEOUT_S
                  ) -> None:
    """Refuse what cannot be answered exactly, then wait until every transaction that could have
    committed by `at` is visible.

    A commit's timestamp is taken before it is flushed and becomes visible, so a transaction
    stamped before `at` may still be in progress to a snapshot taken after `at`. Read the clock,
    then take a transaction id: a transaction that had none yet when the clock was read writes
    (and commits) after it, so only those with lower ids matter; once none of them is running,
    a new snapshot sees every one that committed. Only transactions that wrote to the log matter
    (sql/queries/replay.sql, older_still_open)."""
    sql = queries("replay")
    if not await fetchval(sql["commit_timestamps_tracked"]):
        raise CommitTimesUntracked(CommitTimesUntracked.__doc__)
    if at > await fetchval(sql["clock"]):
        raise AsOfInFuture(AsOfInFuture.__doc__)
    mark = await fetchval(sql["mark_transaction"])
    deadline = time.monotonic() + timeout_s
    while await fetchval(sql["older_still_open"], mark):
        if time.monotonic() > deadline:
            raise TransactionsStillOpen(TransactionsStillOpen.__doc__)
        await asyncio.sleep(_POLL_S)


async def _committed(conn: asyncpg.Connection, keyring: Keyring, at: dt.datetime, business_id: int | None, *,
                     consultation_id: uuid.UUID | None = None, patient_id: uuid.UUID | None = None
                     ) -> AsyncIterator[StoredEvent]:
    """The events committed at `at` (of a business, a consultation or a patient), in log order."""
    args = (at, business_id, str(consultation_id) if consultation_id else None,
            str(patient_id) if patient_id else None)
    async for record in conn.cursor(queries("replay")["as_of_events"], *args):
        if committed_by(at, record["committed_at"], record["recorded_at"]):
            yield decode_record(record, keyring)
