"""`intake projections status | sweep | retry`: what an operator runs."""

from __future__ import annotations

import asyncpg
import msgspec

from events.sqlfiles import queries
from projections.floors import window
from projections.projector import PROJECTIONS, Projector
from service.db import create_pool
from service.settings import Settings


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


async def run_command(action: str, settings: Settings, *, projection: str | None = None) -> int:
    """Run one `intake projections` subcommand; exit code 1 when something is parked or failed."""
    pool = await create_pool(settings, application_name="intake-cli", min_size=1)
    try:
        projector = Projector(pool)
        if action == "sweep":
            print(f"applied {await projector.sweep()} event(s)")
            return 0
        async with pool.acquire() as conn:
            if action == "retry":
                streams = await retry(conn, projection)
            else:
                rows = await status(conn)
        if action == "retry":
            await projector.catch_up(*streams)
            print(f"retried {len(streams)} stream(s)")
            return 0
        print(f"{'projection':<15}{'applied':>10}{'head':>10}{'lag':>8}{'lag s':>9}{'parked':>8}")
        for row in rows:
            print(f"{row.projection:<15}{row.applied_position:>10}{row.head_position:>10}{row.lag_events:>8}"
                  f"{row.lag_seconds:>9.1f}{row.parked:>8}")
        return 1 if any(row.parked for row in rows) else 0
    finally:
        await pool.close()
