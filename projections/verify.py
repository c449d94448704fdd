"""Verifying read models: fold exactly the events their checkpoints cover into scratch tables, and
compare with the live tables, all in one REPEATABLE READ snapshot. The projector writes rows and
checkpoints in one transaction, so in one snapshot the two sides are at the same log position and
a running load cannot make the answer flap. Live tables are only read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from events.privacy import Keyring
from events.sqlfiles import queries
from projections.batch import MODELS, GroupFold, Model, by_patient, by_stream, write
from projections.projector import PROJECTIONS

CHUNK = 2_000
SAMPLE = 10  # differing rows listed per projection


class Difference(msgspec.Struct, frozen=True):
    """One row that differs: its key and the names of the columns that differ (never their values)."""

    key: dict[str, Any]
    problem: str  # "missing in live", "missing in rebuilt" or "columns differ"
    columns: list[str]


class Verdict(msgspec.Struct, frozen=True):
    """One projection compared with a fresh fold of what its checkpoints cover."""

    projection: str
    live_rows: int
    rebuilt_rows: int
    differing: int
    first: list[Difference]

    @property
    def equal(self) -> bool:
        """Whether live and rebuilt agree."""
        return self.differing == 0


async def verify(conn: asyncpg.Connection, names: Sequence[str], keyring: Keyring, *,
                 sample: int = SAMPLE) -> list[Verdict]:
    """Compare each projection with a rebuild of the events its checkpoints cover (one snapshot)."""
    models = [MODELS[name] for name in PROJECTIONS if name in names]
    async with conn.transaction(isolation="repeatable_read"):
        return [await _verify_one(conn, model, keyring, sample) for model in models]


async def _verify_one(conn: asyncpg.Connection, model: Model, keyring: Keyring, sample: int) -> Verdict:
    sql = queries("rebuild")
    await conn.execute(sql["create_scratch_table"].format(table=model.table))
    fold = GroupFold([model], [model.name], keyring, checkpoints=False)
    if model.name == "patients":
        query, group_of = sql["covered_submissions_in_patient_order"], by_patient
    else:
        query, group_of = sql["covered_in_stream_order"], by_stream
    # One connection (temp tables are the session's): fetch, fold and write in turn.
    cursor = await conn.cursor(query, model.name)
    while chunk := await cursor.fetch(CHUNK):
        fold.feed(chunk, group_of)
        if fold.batch.full:
            await write(conn, fold.take(), schema="pg_temp", prefix="verify_")
    fold.close_group()
    taken = fold.take()
    taken.failures.clear()  # what the checkpoints cover was applied live: nothing to park here
    await write(conn, taken, schema="pg_temp", prefix="verify_")
    found = await conn.fetch(_compare_sql(model), sample)
    counts = await conn.fetchrow(sql["count_rows"].format(table=model.table))
    return Verdict(projection=model.name, live_rows=counts["live_rows"], rebuilt_rows=counts["rebuilt_rows"],
                   differing=found[0]["differing"] if found else 0,
                   first=[_difference(model, r) for r in found])


def _compare_sql(model: Model) -> str:
    # Identifiers are the row Struct's field names (constants of this code), never input.
    differs = ", ".join(f"CASE WHEN l.{c} IS DISTINCT FROM r.{c} THEN '{c}' END"
                        for c in model.columns if c not in model.key_columns)
    return queries("rebuild")["compare_tables"].format(
        table=model.table, key=", ".join(model.key_columns), key_select=", ".join(model.key_columns),
        first_key=model.key_columns[0], columns=differs)


def _difference(model: Model, record: asyncpg.Record) -> Difference:
    key = {column: _plain(record[column]) for column in model.key_columns}
    if record["missing_live"]:
        return Difference(key=key, problem="missing in live", columns=[])
    if record["missing_rebuilt"]:
        return Difference(key=key, problem="missing in rebuilt", columns=[])
    return Difference(key=key, problem="columns differ", columns=list(record["columns"]))


def _plain(value: object) -> object:
    return value if isinstance(value, int | str) else str(value)
