"""How far the read models are behind the log, and un-parking what failed: what operators look at."""

from __future__ import annotations

import asyncpg
import msgspec

from events.sqlfiles import queries
from projections.floors import window
from projections.projector import PROJECTIONS


class ProjectionStatus(msgspec.Struct, frozen=True):
    """How far one projection is behind the log."""

    projection: str
    applied_position: int
    head_position: int
    lag_events: int
    lag_seconds: float
    parked: int


async def status(conn: asyncpg.Connection) -> list[ProjectionStatus]:
    """Per projection: applied vs head position, lag in events and seconds (parked events not
    counted: they are in `parked`), parked streams. Reads only the events after each floor."""
    totals = {r["projection"]: r for r in await conn.fetch(queries("projections")["head_and_parked"],
                                                          list(PROJECTIONS))}
    result = []
    for name in sorted(PROJECTIONS):
        seen = await window(conn, name)
        result.append(ProjectionStatus(
            projection=name, applied_position=seen.applied_position, head_position=totals[name]["head_position"],
            lag_events=seen.lag_events, lag_seconds=seen.lag_seconds, parked=totals[name]["parked"]))
    return result


async def retry(conn: asyncpg.Connection, projection: str | None) -> list[str]:
    """Un-park parked streams; returns their ids, to be caught up."""
    records = await conn.fetch(queries("projections")["retry_parked"], projection)
    return sorted({r["stream_id"] for r in records})


class OutboxStats(msgspec.Struct, frozen=True):
    """What the relay has not handed on yet."""

    backlog: int
    oldest_age_s: float


async def outbox_stats(conn: asyncpg.Connection) -> OutboxStats:
    """Outbox rows waiting to be relayed, and the age of the oldest."""
    row = await conn.fetchrow(queries("projections")["outbox_stats"])
    return OutboxStats(backlog=row["backlog"], oldest_age_s=row["oldest_age_s"])
