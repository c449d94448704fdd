"""Read-your-writes: wait until a projection has applied every event of a business up to a position."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from events.errors import UnknownPosition, translating_driver_errors
from events.sqlfiles import queries

# A worker applies a fresh event within milliseconds, so most waits end at the first look.
FRESHNESS_WAIT_S, FRESHNESS_POLL_S = 2.0, 0.02


class ProjectionLagging(Exception):
    """The projection has not yet applied every event up to the requested position; retry shortly."""


class Freshness:
    """Keeps, per projection, a floor in the log below which everything is known to be
    applied, so each look scans only the events since (see reads.sql: projection_lag).
    It holds no connection, only floors: one per API process."""

    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float,
                 wait_s: float = FRESHNESS_WAIT_S, poll_s: float = FRESHNESS_POLL_S) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout
        self._wait_s, self._poll_s = wait_s, poll_s
        self._floors: dict[str, tuple[int, int]] = {}  # projection -> (tx_id, position)
        self._sql = queries("reads")["projection_lag"]

    async def wait(self, projection: str, business_id: int, position: int) -> None:
        """Return once caught up; ProjectionLagging after the wait, UnknownPosition at once if no
        event has that position yet (no write can have returned it)."""
        deadline = time.monotonic() + self._wait_s
        while await self._lagging(projection, business_id, position):
            if time.monotonic() >= deadline:
                raise ProjectionLagging(ProjectionLagging.__doc__)
            await asyncio.sleep(self._poll_s)

    async def _lagging(self, projection: str, business_id: int, position: int) -> bool:
        tx_id, floor = self._floors.get(projection, (0, 0))
        with translating_driver_errors():
            async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                row = await conn.fetchrow(self._sql, projection, position, business_id, str(tx_id), floor)
        if row["beyond_head"]:  # a position no write has returned: the client's mistake, not our lag
            raise UnknownPosition(f"{UnknownPosition.__doc__} ({position})")
        if not row["floor_holds"]:  # checkpoints were reset under the floor: start over
            self._floors.pop(projection, None)
            return await self._lagging(projection, business_id, position)
        if row["floor_tx"] is not None:
            # Concurrent looks may finish out of order: a floor only moves forward.
            new = (int(row["floor_tx"]), row["floor_position"])
            self._floors[projection] = max(new, self._floors.get(projection, new))
        return bool(row["lagging"])
