"""Per-projection floors: how far the log is known to be applied, so that lag checks read
only what is new (see sql/queries/projections.sql: window)."""

from __future__ import annotations

import asyncpg
import msgspec

from events.sqlfiles import queries


class Window(msgspec.Struct, frozen=True, kw_only=True):
    """A projection's events after its floor, as one snapshot saw them."""

    projection: str
    lagging: list[str]  # streams with an event neither applied nor parked
    lag_events: int
    lag_seconds: float  # age of the oldest such event
    applied_position: int  # the newest settled event seen, or the floor
    next_floor: tuple[str, int] | None  # (tx_id, position) to move the floor to, if it can move
    floor_reset: bool = False  # the stored floor no longer held: replace it, even backwards


async def window(conn: asyncpg.Connection, projection: str) -> Window:
    """Look after the floor; a floor that no longer holds (checkpoints were reset) is ignored."""
    sql = queries("projections")
    row = await conn.fetchrow(sql["floor"], projection)
    floor = (row["tx_id"], row["position"]) if row else ("0", 0)
    found = await conn.fetchrow(sql["window"], projection, *floor)
    reset = not found["floor_holds"]
    if reset:
        floor = ("0", 0)
        found = await conn.fetchrow(sql["window"], projection, *floor)
    return Window(
        projection=projection, lagging=list(found["lagging"]), lag_events=found["lag_events"],
        lag_seconds=found["lag_seconds"], applied_position=max(found["newest_applied"] or 0, floor[1]),
        next_floor=(found["floor_tx"], found["floor_position"]) if found["floor_tx"] is not None else None,
        floor_reset=reset,
    )


async def move_floor(conn: asyncpg.Connection, seen: Window) -> None:
    """Move the floor to where `seen` found it could go (forward only)."""
    sql = queries("projections")
    if seen.floor_reset:
        await conn.execute(sql["drop_floor"], seen.projection)
    if seen.next_floor is not None:
        await conn.execute(sql["move_floor"], seen.projection, *seen.next_floor)


async def survey(conn: asyncpg.Connection, projections: list[str]) -> tuple[list[str], list[Window]]:
    """The streams some projection has not applied (parked ones excluded), plus those whose
    projection failed and is not parked yet, wherever they sit; and each projection's window."""
    windows = [await window(conn, projection) for projection in projections]
    failing = await conn.fetch(queries("projections")["failing_streams"], projections)
    lagging = set().union(*(seen.lagging for seen in windows)) | {r["stream_id"] for r in failing}
    return sorted(lagging), windows
