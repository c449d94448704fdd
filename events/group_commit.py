"""Group commit: concurrent appends share one transaction and one WAL flush.

Every request still gets its own all-or-nothing outcome. Appends that arrive
while a commit is in flight wait in `pending` and go together in the next one,
so batches grow with load and a lone request is committed at once (no timer).
A batch is one statement and so one transaction of its own: one round trip, and
no transaction left open while this process gets round to sending COMMIT. Only a
fault point (drills, tests) wraps it in an explicit transaction, to act before
the commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import asyncpg

from events.errors import AppendConflict, KeyUnavailable, StoreUnavailable, translating_driver_errors
from events.privacy import DataKey
from events.sqlfiles import queries

MAX_BATCH = 256  # rows per statement: bounds statement size and a batch's latency
MAX_INFLIGHT = 4  # concurrent commits: overlaps round trips without hoarding the pool

FaultPoint = Callable[[str], Awaitable[None]]
PARTIAL_REQUEST = "IK001"  # the append statement's own abort (sql/migrations/0014_append_in_one_statement.sql)


@dataclass(frozen=True, slots=True)
class Row:
    """One event row, already encoded, ready for the append statement."""

    event_id: object  # uuid.UUID
    stream_id: str
    stream_version: int
    event_type: str
    schema_version: int
    business_id: int
    idempotency_key: str | None
    request_fingerprint: bytes | None
    payload: str
    metadata: str
    data_key: DataKey | None = None  # the patient key its personal fields are sealed with


@dataclass(frozen=True, slots=True)
class Committed:
    """Where each row of one request landed, in the order sent."""

    positions: tuple[int, ...]
    recorded_at: object  # datetime


class _PartialRequest(Exception):
    """Some rows of one request were skipped and others inserted: the batch must not commit (the
    statement aborts itself; in an explicit transaction, this process rolls it back)."""


@dataclass(slots=True)
class _Pending:
    rows: Sequence[Row]
    future: asyncio.Future[Committed] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommitter:
    """Appends requests' rows in shared transactions; see the module docstring."""

    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float, fault: FaultPoint | None = None) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout
        self._fault = fault
        self._pending: list[_Pending] = []
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._sql = queries("events")["append_events"]

    async def append(self, rows: Sequence[Row]) -> Committed:
        """Commit all rows of one request, or raise AppendConflict having written none."""
        pending = _Pending(rows)
        self._pending.append(pending)
        if self._inflight < MAX_INFLIGHT:
            self._inflight += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # shield: a client that hangs up must not cancel a commit shared with others.
        return await asyncio.shield(pending.future)

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                await self._commit_batch(batch)
        finally:
            self._inflight -= 1

    async def _commit_batch(self, batch: list[_Pending]) -> None:
        try:
            outcomes = await self._commit(batch)
        except StoreUnavailable as error:  # the database is gone for everyone alike
            outcomes = [error] * len(batch)
        except Exception as error:  # each request below meets only its own error, never swallowed
            if len(batch) == 1:
                outcomes = [AppendConflict(AppendConflict.__doc__) if isinstance(error, _PartialRequest) else error]
            else:
                # A partial request (never expected with single-stream requests) or
                # a row the database refuses must not fail the other requests that
                # happened to share the batch: give each its own transaction.
                for one in batch:
                    await self._commit_batch([one])
                return
        for pending, outcome in zip(batch, outcomes, strict=True):
            _settle(pending.future, outcome)

    async def _commit(self, batch: list[_Pending]) -> list[Committed | Exception]:
        rows = [row for pending in batch for row in pending.rows]
        arguments = append_arguments(rows, [n for n, pending in enumerate(batch) for _ in pending.rows])
        with translating_driver_errors():
            async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                try:
                    if self._fault is None:
                        return _outcomes(batch, await conn.fetch(self._sql, *arguments))
                    async with conn.transaction():
                        outcomes = _outcomes(batch, await conn.fetch(self._sql, *arguments))
                        await self._fault("append.before_commit")
                    return outcomes
                except asyncpg.PostgresError as error:
                    if error.sqlstate == PARTIAL_REQUEST:
                        raise _PartialRequest from error
                    raise


def _outcomes(batch: list[_Pending], returned: list[asyncpg.Record]) -> list[Committed | Exception]:
    inserted = {rec["event_id"]: rec for rec in returned if rec["event_id"] is not None}
    unusable = {rec["unusable_key"] for rec in returned if rec["unusable_key"] is not None}
    return [_outcome(pending, inserted, unusable) for pending in batch]


def append_arguments(rows: Sequence[Row], requests: Sequence[int] | None = None) -> list[list[object]]:
    """The arguments of the append_events statement for these rows; `requests`: each row's request
    number within the batch (all one request when not given)."""
    columns = [list(column) for column in zip(*((*_astuple(r),) for r in rows), strict=True)]
    return [*columns, *_key_columns(rows), list(requests) if requests is not None else [0] * len(rows)]


def _astuple(row: Row) -> tuple[object, ...]:
    return (row.event_id, row.stream_id, row.stream_version, row.event_type, row.schema_version,
            row.business_id, row.idempotency_key, row.request_fingerprint, row.payload, row.metadata)


def _key_columns(rows: Sequence[Row]) -> list[list[object]]:
    """The data keys a batch uses (each once, in one order so that concurrent batches creating
    keys for the same patients wait on each other instead of deadlocking), and each row's key id."""
    keys = sorted({r.data_key.key_id: r.data_key for r in rows if r.data_key}.values(),
                  key=lambda k: (k.business_id, k.patient_id.bytes))
    return [[k.key_id for k in keys], [k.business_id for k in keys], [k.patient_id for k in keys],
            [k.wrapped for k in keys], [k.kek_id for k in keys],
            [r.data_key.key_id if r.data_key else None for r in rows]]


def _outcome(pending: _Pending, inserted: dict[object, asyncpg.Record], unusable: set[object]) -> Committed | Exception:
    found = [inserted.get(row.event_id) for row in pending.rows]
    if all(rec is None for rec in found):
        if unusable and any(row.data_key and row.data_key.key_id in unusable for row in pending.rows):
            return KeyUnavailable(KeyUnavailable.__doc__)
        return AppendConflict(AppendConflict.__doc__)
    if any(rec is None for rec in found):
        raise _PartialRequest
    return Committed(positions=tuple(rec["position"] for rec in found), recorded_at=found[0]["recorded_at"])


def _settle(future: asyncio.Future[Committed], outcome: Committed | Exception) -> None:
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
