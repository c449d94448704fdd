"""Rebuilding read models from the log while the API and the workers keep running.

1. Shadow tables in schema `intake_rebuild`, with the live tables' names, columns, index and
   constraint names and grants, plus shadow checkpoint and failure tables.
2. Bulk: one REPEATABLE READ snapshot of the log, folded by the batch path (projections/batch.py)
   and COPYed in; the shadow then holds exactly the events visible in that snapshot. The read
   tables' indexes are built after their rows are in (one sort each, not a row-by-row insert into
   every index); the shadow checkpoints and failures, never swapped in, are unlogged.
3. Tail: the live projector's own code, pointed at the shadow by `search_path`, catches up the
   streams with events the last snapshot did not see; repeated while the tail is large.
4. Swap, one transaction: lock the live checkpoints (holding the live projectors back), catch the
   shadow up once more, replace this projection's checkpoints, failures and floor with the shadow's,
   then drop each live table and move its shadow into its place. Events that commit meanwhile are
   not in the shadow's checkpoints, so the live projectors apply them after the swap.

Interrupted anywhere, the live tables are untouched (the swap is one transaction) and the shadow
schema is left over; the next rebuild drops it first. A session advisory lock refuses a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import msgspec

from events.privacy import Keyring
from events.sqlfiles import queries
from projections.batch import MODELS, GroupFold, Model, by_patient, by_stream, write
from projections.projector import BATCH, PROJECTIONS, Projector

SHADOW = "intake_rebuild"
CHUNK = 5_000  # events fetched from the server-side cursor at a time
SMALL_TAIL = 200  # streams few enough to catch up while the live projectors are held back
TAIL_ROUNDS = 5
SWAP_ATTEMPTS = 5
# The rebuild writes hundreds of MB (the shadow's COPY, its index builds): asked to write them back as
# it goes, it never leaves a pile of dirty pages whose writeback, when it comes, holds up every
# commit's WAL flush behind it (docs/PERFORMANCE.md, session 7). 0 (PostgreSQL's default) leaves it to
# the kernel's 30-second expiry.
WRITE_BACK_AS_YOU_GO = {"backend_flush_after": "256kB"}
SWAP_LOCK_TIMEOUT = "1s"  # a swap waiting on a long reader makes new readers queue behind it: not for long

Progress = Callable[[str, int, int], None]  # (phase, events done, events in total)
ConnectionHook = Callable[[asyncpg.Connection], Awaitable[None]]


class RebuildBusy(Exception):
    """another rebuild is running (it holds the rebuild lock); wait for it to finish"""


class RebuildFailed(Exception):
    """the rebuild could not swap its tables in; the live tables are unchanged"""


class Rebuilt(msgspec.Struct, frozen=True):
    """What a rebuild did."""

    projections: list[str]
    events: int  # in the log, as the bulk read's snapshot saw it
    folded: int  # read by the batch path: submissions count twice (patients read them in patient order)
    tail_streams: int  # streams caught up after the bulk snapshot
    seconds: float


def _quiet(phase: str, done: int, total: int) -> None:
    return None


async def _as_is(conn: asyncpg.Connection) -> None:
    return None


async def rebuild(dsn: str, names: Sequence[str], keyring: Keyring, *, progress: Progress = _quiet,
                  on_connect: ConnectionHook = _as_is) -> Rebuilt:
    """Rebuild these projections (as the schema's owner, at `dsn`) and swap them in; `on_connect`
    sees each connection that reads or writes the bulk and the tail (e.g. to lower its priority)."""
    started = time.monotonic()
    models = [MODELS[name] for name in PROJECTIONS if name in names]
    sql = queries("rebuild")
    conn = await asyncpg.connect(dsn, server_settings=WRITE_BACK_AS_YOU_GO)
    try:
        if not await conn.fetchval(sql["try_rebuild_lock"]):
            raise RebuildBusy(RebuildBusy.__doc__)
        try:
            await _prepare_shadow(conn, models)
            snapshot, events, folded = await _bulk(dsn, models, keyring, progress, on_connect)
            tail = await _catch_up_and_swap(conn, dsn, models, keyring, snapshot, on_connect)
        finally:
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await conn.execute(sql["drop_shadow"])
    finally:
        await conn.close()
    return Rebuilt(projections=[m.name for m in models], events=events, folded=folded, tail_streams=tail,
                   seconds=time.monotonic() - started)


async def _prepare_shadow(conn: asyncpg.Connection, models: list[Model]) -> None:
    sql = queries("rebuild")
    async with conn.transaction():
        await conn.execute(sql["drop_shadow"])
        await conn.execute(sql["create_shadow"])
        for table, create in [(m.table, "create_bare_shadow_table") for m in models] + [
                (t, "create_unlogged_shadow_table") for t in ("projection_checkpoints", "projection_failures")]:
            await conn.execute(sql[create].format(table=table))
            for renaming in await conn.fetch(sql["rename_shadow_indexes"], table):
                await conn.execute(renaming["statement"])
        for model in models:
            for grant in await conn.fetch(sql["copy_grants"], model.table):
                await conn.execute(grant["statement"])


async def _bulk(dsn: str, models: list[Model], keyring: Keyring, progress: Progress,
                on_connect: ConnectionHook) -> tuple[str, int, int]:
    """Fold the log as one snapshot sees it into the shadow; returns that snapshot, the log's events in
    it, and the events folded."""
    sql = queries("rebuild")
    reader = await asyncpg.connect(dsn, server_settings=WRITE_BACK_AS_YOU_GO)
    writer = await asyncpg.connect(dsn, server_settings=WRITE_BACK_AS_YOU_GO)
    await on_connect(reader)
    await on_connect(writer)
    try:
        # Read-only and without a transaction id, it does not hold back anyone's horizon.
        async with reader.transaction(isolation="repeatable_read", readonly=True):
            head = await reader.fetchrow(sql["snapshot"])
            with_patients = any(m.name == "patients" for m in models)
            total = head["events"] + (head["submissions"] if with_patients else 0)
            by_slot = GroupFold([m for m in models if m.name != "patients"], [m.name for m in models], keyring)
            done = await _fold(reader, writer, sql["log_in_stream_order"], by_slot, by_stream,
                               lambda n: progress("rebuild", n, total))
            if with_patients:
                patients = GroupFold([MODELS["patients"]], ["patients"], keyring, skip=by_slot.skip, checkpoints=False)
                done += await _fold(reader, writer, sql["submissions_in_patient_order"], patients, by_patient,
                                    lambda n: progress("rebuild", done + n, total))
        await _index_and_analyze(writer, models)
        return head["snapshot"], head["events"], done
    finally:
        await reader.close()
        await writer.close()


async def _index_and_analyze(conn: asyncpg.Connection, models: list[Model]) -> None:
    """The shadow read tables' indexes, built now that their rows are in (after the bulk snapshot is
    released), then analyzed (autovacuum stays off on them until the swap)."""
    sql = queries("rebuild")
    await conn.execute(sql["serial_index_builds"])
    for model in models:
        for index in await conn.fetch(sql["shadow_index_statements"], model.table):
            await conn.execute(index["statement"])
        await conn.execute(sql["analyze_shadow_table"].format(table=model.table))


async def _fold(reader: asyncpg.Connection, writer: asyncpg.Connection, query: str, fold: GroupFold,
                group_of: Callable[[asyncpg.Record], object], report: Callable[[int], None]) -> int:
    """Stream `query` through `fold`, writing (and committing) a batch whenever one is full. The next
    chunk is fetched, and the last batch written, while this one is folded: at most two of each in memory."""
    cursor = await reader.cursor(query)
    fetching = asyncio.ensure_future(cursor.fetch(CHUNK))
    writing: asyncio.Future[int] | None = None
    try:
        while chunk := await fetching:
            fetching = asyncio.ensure_future(cursor.fetch(CHUNK))
            fold.feed(chunk, group_of)
            if fold.batch.full:
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(write(writer, fold.take(), schema=SHADOW))
            report(fold.events)
        if writing is not None:
            await writing
    finally:
        for task in (fetching, writing):
            if task is not None and not task.done():
                task.cancel()
    fold.close_group()
    await write(writer, fold.take(), schema=SHADOW)
    return fold.events


async def _catch_up_and_swap(conn: asyncpg.Connection, dsn: str, models: list[Model], keyring: Keyring,
                             snapshot: str, on_connect: ConnectionHook) -> int:
    """Catch the shadow up with the live projector's code (at the shadow, by search_path), then swap."""
    shadow = await asyncpg.create_pool(dsn, min_size=1, max_size=2, init=on_connect,
                                       server_settings={"search_path": f"{SHADOW}, public", **WRITE_BACK_AS_YOU_GO})
    try:
        projector = Projector(shadow, keyring, projections={m.name: PROJECTIONS[m.name] for m in models})
        caught_up = 0
        for _ in range(TAIL_ROUNDS):
            snapshot, streams = await _catch_up(conn, projector, snapshot)
            caught_up += streams
            if streams <= SMALL_TAIL:
                break
        else:  # the log grows faster than the shadow catches up: swapping now would stall live projectors
            raise RebuildFailed(f"{RebuildFailed.__doc__} (the log kept growing faster than the catch-up)")
        for _ in range(SWAP_ATTEMPTS):
            try:
                async with conn.transaction():
                    return caught_up + await _swap(conn, projector, models, snapshot)
            except asyncpg.LockNotAvailableError:
                snapshot, streams = await _catch_up(conn, projector, snapshot)  # keep up while waiting
                caught_up += streams
        raise RebuildFailed(f"{RebuildFailed.__doc__} (the live tables stayed locked by others)")
    finally:
        await shadow.close()


async def _catch_up(conn: asyncpg.Connection, projector: Projector, snapshot: str) -> tuple[str, int]:
    """Apply to the shadow every stream with an event `snapshot` did not see; returns the snapshot
    of the statement that found them (the shadow now holds everything visible in it) and their count."""
    found = await conn.fetchrow(queries("rebuild")["streams_since"], snapshot)
    streams = list(found["streams"])
    for start in range(0, len(streams), BATCH):
        await projector.catch_up(*streams[start:start + BATCH])
    return found["snapshot"], len(streams)


async def _swap(conn: asyncpg.Connection, projector: Projector, models: list[Model], snapshot: str) -> int:
    """Inside the caller's transaction. The live read tables are locked (ACCESS EXCLUSIVE) only for
    the drop and the move, so reads wait milliseconds, not the checkpoints' copy."""
    sql = queries("rebuild")
    await conn.execute(sql["swap_lock_timeout"], SWAP_LOCK_TIMEOUT)
    await conn.execute(sql["lock_checkpoints_table"])
    snapshot, streams = await _catch_up(conn, projector, snapshot)
    await conn.execute(sql["replace_checkpoints"], [m.name for m in models])
    for model in models:
        await conn.execute(sql["drop_failures"], model.name)
        await conn.execute(sql["copy_failures"], model.name)
        await conn.execute(sql["drop_floor"], model.name)
        await conn.execute(sql["settle_floor"], model.name, snapshot)
    for model in models:
        await conn.execute(sql["lock_live_table"].format(table=model.table))
    for model in models:
        await conn.execute(sql["enable_shadow_autovacuum"].format(table=model.table))
        await conn.execute(sql["drop_live_table"].format(table=model.table))
        await conn.execute(sql["move_shadow_table"].format(table=model.table))
    return streams
