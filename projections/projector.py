"""Applies a stream's new events to every read model, exactly once, in stream order.

Each projection keeps a checkpoint per stream, written in the same transaction
as the rows it covers. The checkpoint row is locked first, so two workers given
the same stream queue behind each other and the second finds nothing new: a
duplicate delivery is a no-op. A projection that keeps failing on a stream is
parked for that stream only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import asyncpg
import msgspec
import structlog

from events.codec import UnknownEventType
from events.errors import StoreUnavailable, translating_driver_errors
from events.sqlfiles import queries
from events.store import StoredEvent, decode_record
from projections import approvals, consultations, patients

Apply = Callable[[asyncpg.Connection, StoredEvent], Awaitable[None]]
PROJECTIONS: Mapping[str, Apply] = {
    patients.NAME: patients.apply,
    consultations.NAME: consultations.apply,
    approvals.NAME: approvals.apply,
}
PARK_AFTER_ATTEMPTS = 3
# What a bad event or a read-model bug looks like, as opposed to an outage:
# these are recorded against the stream (and parked after a few tries).
_POISON = (asyncpg.PostgresError, LookupError, UnknownEventType, msgspec.DecodeError, ValueError, TypeError)
_log = structlog.get_logger("intake.projector")


class Projector:
    """Catches streams up in every projection."""

    def __init__(self, pool: asyncpg.Pool, *, projections: Mapping[str, Apply] = PROJECTIONS,
                 acquire_timeout: float = 5.0) -> None:
        self._pool = pool
        self._projections = projections
        self._acquire_timeout = acquire_timeout
        self._sql = queries("projections")

    @property
    def names(self) -> list[str]:
        """The projections this projector maintains."""
        return list(self._projections)

    async def catch_up(self, stream_id: str) -> int:
        """Apply whatever each projection has not yet applied of this stream; returns events applied."""
        applied = 0
        for name, apply in self._projections.items():
            applied += await self._catch_up_one(name, apply, stream_id)
        return applied

    async def _catch_up_one(self, name: str, apply: Apply, stream_id: str) -> int:
        with translating_driver_errors():
            async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                if await conn.fetchval(self._sql["is_parked"], name, stream_id):
                    return 0
                failing: asyncpg.Record | None = None
                try:
                    async with conn.transaction():
                        await conn.execute(self._sql["lock_checkpoint"], name, stream_id)
                        version = await conn.fetchval(self._sql["checkpoint_for_update"], name, stream_id)
                        records = await conn.fetch(self._sql["stream_after"], stream_id, version)
                        for failing in records:
                            await apply(conn, decode_record(failing))
                        if records:
                            last = records[-1]
                            await conn.execute(self._sql["advance_checkpoint"], name, stream_id,
                                               last["stream_version"], last["position"])
                except StoreUnavailable:
                    raise
                except _POISON as error:
                    await self._record_failure(conn, name, stream_id, failing, error)
                    return 0
                return len(records)

    async def _record_failure(self, conn: asyncpg.Connection, name: str, stream_id: str,
                              failing: asyncpg.Record | None, error: Exception) -> None:
        # Type and constraint only: a message could quote row data (patient details).
        reason = type(error).__name__ + (f" ({error.constraint_name})"
                                         if getattr(error, "constraint_name", None) else "")
        version, position = (failing["stream_version"], failing["position"]) if failing else (0, 0)
        record = await conn.fetchrow(self._sql["record_failure"], name, stream_id, version, position, reason,
                                     PARK_AFTER_ATTEMPTS)
        _log.warning("projection.failed", projection=name, stream_id=stream_id, position=position,
                     error=reason, attempts=record["attempts"], parked=record["parked"])

    async def lagging_streams(self) -> list[str]:
        """Streams some projection has not fully applied (parked ones excluded)."""
        with translating_driver_errors():
            async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                return [r["stream_id"] for r in await conn.fetch(self._sql["lagging_streams"], self.names)]

    async def sweep(self) -> int:
        """Catch up every lagging stream: what makes a lost job (or a wiped Redis) harmless."""
        applied = 0
        for stream_id in await self.lagging_streams():
            applied += await self.catch_up(stream_id)
        if applied:
            _log.info("projection.swept", events=applied)
        return applied
