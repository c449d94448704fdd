"""Applies streams' new events to every read model, exactly once, in stream order.

Each projection keeps a checkpoint per stream, written in the same transaction as
the rows it covers. A batch of streams is caught up in one transaction: its
checkpoint rows are locked first (in a fixed order), so two workers given the same
stream queue behind each other and the second finds nothing new: a duplicate
delivery is a no-op. If anything in a batch fails, the batch is rolled back and
redone one (projection, stream) at a time, so that a failure is pinned on the one
that fails, and a projection that keeps failing on a stream is parked for that
stream only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

import asyncpg
import msgspec
import structlog

from events.errors import StoreUnavailable, is_outage, translating_driver_errors
from events.privacy import Keyring
from events.sqlfiles import queries
from events.store import UNREADABLE, decode_record
from events.types import StoredEvent
from projections import approvals, consultations, floors, patients
from projections.writers import apply_approvals, apply_consultations, apply_patients, columns

Apply = Callable[[asyncpg.Connection, Sequence[StoredEvent]], Awaitable[None]]
PROJECTIONS: Mapping[str, Apply] = {
    patients.NAME: apply_patients,
    consultations.NAME: apply_consultations,
    approvals.NAME: apply_approvals,
}
PARK_AFTER_ATTEMPTS = 3
BATCH = 50  # streams per transaction when sweeping
CONFLICT_RETRIES = 3
# What a bad event or a read-model bug looks like, as opposed to an outage:
# these are recorded against the stream (and parked after a few tries).
_POISON = (asyncpg.PostgresError, *UNREADABLE)
_log = structlog.get_logger("intake.projector")


class _Checkpoint(msgspec.Struct, frozen=True):
    projection: str
    stream_id: str
    version: int
    position: int


class ProjectionFailed(Exception):
    """A batch failed for a poison reason, first failing at the event (version, position) given."""

    def __init__(self, cause: BaseException, version: int, position: int) -> None:
        super().__init__(type(cause).__name__)
        self.cause, self.version, self.position = cause, version, position


class Projector:
    """Catches streams up in every projection."""

    def __init__(self, pool: asyncpg.Pool, keyring: Keyring, *, projections: Mapping[str, Apply] = PROJECTIONS,
                 acquire_timeout: float = 5.0) -> None:
        self._pool = pool
        self._keyring = keyring
        self._projections = projections
        self._acquire_timeout = acquire_timeout
        self._sql = queries("projections")

    @property
    def names(self) -> list[str]:
        """The projections this projector maintains."""
        return list(self._projections)

    async def catch_up(self, *stream_ids: str) -> int:
        """Apply whatever each projection has not yet applied of these streams, in one
        transaction if all goes well; returns (event, projection) applications made."""
        streams = sorted(set(stream_ids))
        if not streams:
            return 0
        try:
            return await self._apply(self.names, streams)
        except ProjectionFailed:
            pass
        applied = 0
        for stream_id in streams:
            for name in self.names:
                applied += await self._apply_or_record(name, stream_id)
        return applied

    async def _apply_or_record(self, name: str, stream_id: str) -> int:
        try:
            return await self._apply([name], [stream_id], one_at_a_time=True)
        except ProjectionFailed as failed:
            await self._record_failure(name, stream_id, failed)
            return 0

    async def _apply(self, names: list[str], streams: list[str], *, one_at_a_time: bool = False) -> int:
        """One transaction; retried when PostgreSQL picks it as a deadlock or serialization victim."""
        for attempt in range(CONFLICT_RETRIES):
            try:
                with translating_driver_errors():
                    async with self._pool.acquire(timeout=self._acquire_timeout) as conn, conn.transaction():
                        return await self._apply_in(conn, names, streams, one_at_a_time)
            except asyncpg.TransactionRollbackError:
                if attempt == CONFLICT_RETRIES - 1:
                    raise StoreUnavailable("projection batch kept conflicting") from None
        raise AssertionError("unreachable")

    async def _apply_in(self, conn: asyncpg.Connection, names: list[str], streams: list[str],
                        one_at_a_time: bool) -> int:
        await conn.execute(self._sql["ensure_checkpoints"], names, streams)
        locked = await conn.fetch(self._sql["lock_checkpoints"], names, streams)
        parked = {(r["projection"], r["stream_id"]) for r in await conn.fetch(self._sql["parked_among"], names, streams)}
        done = {(r["projection"], r["stream_id"]): r["version"] for r in locked
                if (r["projection"], r["stream_id"]) not in parked}
        applied_by_all: dict[str, int] = {}  # per stream, the version every projection has reached
        for (_, stream_id), version in done.items():
            applied_by_all[stream_id] = min(version, applied_by_all.get(stream_id, version))
        if not applied_by_all:
            return 0
        records = await conn.fetch(self._sql["stream_events"], list(applied_by_all))
        events: list[StoredEvent] = []
        for record in records:
            if record["stream_version"] <= applied_by_all[record["stream_id"]]:
                continue  # applied by every projection already
            try:
                events.append(decode_record(record, self._keyring))
            except _POISON as error:
                raise ProjectionFailed(error, record["stream_version"], record["position"]) from error
        applied, advanced = 0, []
        for name in names:
            todo = [e for e in events if (name, e.stream_id) in done and e.stream_version > done[name, e.stream_id]]
            if not todo:
                continue
            # One event at a time when isolating a failure, so that it is pinned on its event.
            for chunk in ([e] for e in todo) if one_at_a_time else [todo]:
                try:
                    await self._projections[name](conn, chunk)
                except _POISON as error:
                    if is_outage(error) or isinstance(error, asyncpg.TransactionRollbackError):
                        raise  # an outage or a conflict, not a bad event: retried, never parked
                    raise ProjectionFailed(error, chunk[0].stream_version, chunk[0].position) from error
            applied += len(todo)
            last = {e.stream_id: e for e in todo}  # events are in stream order: the last one wins
            advanced += [_Checkpoint(name, s, e.stream_version, e.position) for s, e in last.items()]
        if advanced:
            await conn.execute(self._sql["advance_checkpoints"], *columns(advanced))
        return applied

    async def _record_failure(self, name: str, stream_id: str, failed: ProjectionFailed) -> None:
        # Type and constraint only: a message could quote row data (patient details).
        error = failed.cause
        reason = type(error).__name__ + (f" ({error.constraint_name})"
                                         if getattr(error, "constraint_name", None) else "")
        with translating_driver_errors():
            async with self._pool.acquire(timeout=self._acquire_timeout) as conn, conn.transaction():
                await conn.execute(self._sql["lock_checkpoint"], name, stream_id)
                record = await conn.fetchrow(self._sql["record_failure"], name, stream_id, failed.version,
                                             failed.position, reason, PARK_AFTER_ATTEMPTS)
        if record is None:  # another worker applied the pair meanwhile
            return
        _log.warning("projection.failed", projection=name, stream_id=stream_id, position=failed.position,
                     error=reason, attempts=record["attempts"], parked=record["parked"])

    async def sweep(self) -> int:
        """Catch up every lagging stream: what makes a lost job (or a wiped Redis) harmless.
        Reads only the events after each projection's floor, then moves the floors."""
        with translating_driver_errors():
            async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                lagging, windows = await floors.survey(conn, self.names)
        applied = 0
        for start in range(0, len(lagging), BATCH):
            applied += await self.catch_up(*lagging[start:start + BATCH])
        with translating_driver_errors():
            async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                if lagging:  # look again, so the floors pass what was just applied
                    windows = [await floors.window(conn, name) for name in self.names]
                for seen in windows:
                    await floors.move_floor(conn, seen)
        if applied:
            _log.info("projection.swept", events=applied)
        else:  # the usual case every 15 s: nothing was lost, nothing to say at info
            _log.debug("projection.sweep_clean")
        return applied
